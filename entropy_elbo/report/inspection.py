"""How a checkpoint from the wild was read: the one-line summary, the assumptions, and `inspect`'s table."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from entropy_elbo.report.console import err, message, print_json
from entropy_elbo.report.figures import variance_text
from entropy_elbo.report.layout import show


def wild_summary(intro: object) -> str:
    """One stderr line saying how a checkpoint from the wild was read."""
    dec, enc = intro.decoder, intro.encoder
    where = f" ({dec.name}, {dec.param})" if dec.name else " (no parameter holds it)"
    return (f"read {intro.source} as {intro.model_kind} ({intro.fmt}): H={intro.h}, D={intro.d}; decoder variance "
            f"{dec.kind}{where}; encoder variance {enc.name} ({enc.param}); "
            "see `entropy-elbo inspect` for the evidence")


FLAG_WIDTH = len("--decoder-var-param")  # the longest override flag: that column never narrows below it


def inspection_table(intro: object) -> Table:
    """What was found in a checkpoint, how sure, and which flag overrides each guess."""
    t = Table(title=escape(f"{intro.source}: {intro.model_kind} ({intro.fmt})"))
    t.add_column("item", overflow="fold")
    t.add_column("found", overflow="fold")
    t.add_column("evidence", overflow="fold")
    t.add_column("override", overflow="fold", min_width=FLAG_WIDTH)  # a flag is never cut at 80 columns
    add_row(t, "latents H", str(intro.h), "output size of the encoder's mean", "--model")
    add_row(t, "observed dims D", str(intro.d), "input size of the encoder", "--model")
    dec, enc = intro.decoder, intro.encoder
    add_row(t, "decoder variance", f"{dec.kind}: {dec.name or '-'} [{dec.param or '-'}]", dec.evidence, dec.override)
    add_row(t, "  sigma^2", variance_text(dec.value), "variance implied by the stored value", "")
    add_row(t, "encoder variance", f"{enc.kind}: {enc.name} [{enc.param}]", enc.evidence, enc.override)
    if enc.value is not None:
        add_row(t, "  tau^2", variance_text(enc.value), "shared by all data points", "")
    if intro.prior is not None:
        add_row(t, "prior variance", f"learned: {intro.prior.name}", intro.prior.evidence, intro.prior.override)
    for note in intro.notes:
        add_row(t, "note", "", note, "")
    for a in intro.assumptions:
        add_row(t, "assumed", a.what, a.evidence, a.override)
    return t


def add_row(t: Table, *cells: str) -> None:
    """A row of plain text: brackets in names ("[logvar]", "m[1].pt") show as written, not as rich markup."""
    t.add_row(*map(escape, cells))


def print_reading(intro: object) -> None:
    """How a checkpoint from the wild was read (one line), then each assumption made, one stderr line each."""
    message(wild_summary(intro))
    for a in getattr(intro, "assumptions", []):
        err().print(escape(f"assumed: {a.what} ({a.evidence}; override: {a.override})"), highlight=False)


def print_inspection(intro: object, as_json: bool) -> None:
    """Print an `Introspection` as a table, or as one JSON object on stdout."""
    if as_json:
        print_json(intro.to_dict())
        return
    show(inspection_table(intro))
    if intro.decoder.kind == "fixed":
        message("note: a fixed decoder variance: no entropy ELBO (Thm. 1 needs a learned sigma^2); estimate gives "
                "the Monte Carlo ELBO at --decoder-variance VALUE, or at the best sigma^2 given the rest with "
                "--decoder-variance optimal")


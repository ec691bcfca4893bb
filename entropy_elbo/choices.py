"""The names the command line offers as choices and the defaults it shows, in one module that imports nothing,
so that `entropy-elbo --help` and a usage error print without importing torch or numpy.

The modules that act on a name import it from here (models.config, checkpoints.mlp, data.preprocess,
latents, checkpoints.introspect); tests/test_cli_startup.py checks that the registries keyed by these
names (MODELS, SYNTHETIC, BUNDLED, mlp.OUTPUTS) hold exactly them.
"""

MODEL_KINDS = ("conv", "linear", "vae1", "vae2", "vae3")  # entropy_elbo.models.MODELS
ACTIVATIONS = ("relu", "leaky_relu", "tanh", "elu", "softplus")
OUTPUT_ACTIVATIONS = ("linear", "sigmoid", "tanh", "leaky_relu")  # "linear" and checkpoints.mlp.OUTPUTS
VARIANCE_PARAMS = ("logvar", "logstd", "std", "var", "softplus_std", "softplus_var")
PREPROCESS = ("auto", "as-trained", "none")
SCALES = ("minmax", "standard", "none")
SYNTHETIC_SETS = ("manifold", "ppca", "ring", "stream")  # entropy_elbo.data.synthetic.SYNTHETIC
ROW_SETS = ("train", "holdout", "all")  # estimate/collapse/compare --rows: entropy_elbo.splits
BUNDLED_SETS = ("digits", "breast_cancer", "iris", "wine", "diabetes")  # entropy_elbo.data.bundled.BUNDLED

ACTIVE_THRESHOLD = 0.01  # Burda et al. 2016: active when Var_x[E_q z_h] exceeds this
LUCAS_EPSILON = 0.01  # nats: Lucas et al. 2019's KL below which a point counts as collapsed
LUCAS_DELTA = 0.01

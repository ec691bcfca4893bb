"""entropy-elbo: the exact ELBO of Gaussian VAEs from three entropies (Damm et al., AISTATS 2023)."""

from entropy_elbo.cli import main

main()

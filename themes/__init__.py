"""Console themes shipped as TOML files."""

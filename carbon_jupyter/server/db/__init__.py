"""The team server's database: ``schema`` (tables), ``engine`` (open, migrate), ``accounts``."""

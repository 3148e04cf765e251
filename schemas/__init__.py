"""The national XSDs, shipped as package data (installed as ``vdx_schemas``)."""

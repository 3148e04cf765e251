"""The programs that connect agency software to the hub (installed as ``vdx_adapters``)."""

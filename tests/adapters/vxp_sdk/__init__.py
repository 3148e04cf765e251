"""The real VXP SDK (Java) in the test suite: golden vectors, and a driver run on the jars.

:mod:`tests.adapters.vxp_sdk.runner` compiles ``SdkDriver.java`` (and ``EdXml102Build.java``)
against the unmodified jars in ``../shared/vxp-sdk/`` into a temporary directory and runs
them; nothing built here is kept in the tree.
"""

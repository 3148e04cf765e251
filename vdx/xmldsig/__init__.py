"""XML signatures: the edXML verifier (``verify``) and its frozen policies (``policy``), the
generic enveloped-signature engine it runs (``enveloped``, ``digest``), trust anchors
(``trust``), the signer (``sign``), the development PKI (``pki``)."""

"""XML signatures: trust anchors, the verifier and its policies, the signer, the
development PKI."""

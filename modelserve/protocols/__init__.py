"""Other wire protocols, translated to and from the inference service."""

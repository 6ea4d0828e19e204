"""The bundled standard library and model zoo, written in the spec language (*.res)."""

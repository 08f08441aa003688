"""Generation with a local GGUF model through llama-cpp-python."""

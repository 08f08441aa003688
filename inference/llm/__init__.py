"""Language models: prompts for them, replies from them, and where they run.

``base``: the model protocol and shared types (imports nothing of the package);
``harmony``: gpt-oss prompts and the text parser of its replies; ``harmony_tokens``: the
parser of its replies by token ids; ``formats``: prompt formats and reply readers;
``backend``: the local GGUF model (llama-cpp-python) and ``get_model``; ``remote``: an
OpenAI-compatible server as the model.
"""

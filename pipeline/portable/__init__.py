"""The student network's source as it travels inside every exported student folder.

`pipeline.model.hf.save_student` copies the files named in `FILES` verbatim next to config.json,
and config.json's `auto_map` points Hugging Face's remote-code loader at them, so that
`AutoModel.from_pretrained(folder, trust_remote_code=True)` (and sentence-transformers) loads a
student on a machine without this project. The package runs the very same modules
(`pipeline.model.ops` and `pipeline.model.student` are built on them), so what a folder runs is
what the pipeline trained and checked.

Rules for the files here, because the loader copies them flat into its own module cache and
installs nothing: import only the standard library, torch and transformers, and each other by
flat relative imports (`from .ops import ...`); never `pipeline`. This `__init__` is not copied.
"""

FILES = ("opset.py", "ops.py", "network.py", "configuration_nasbert.py", "modeling_nasbert.py")

"""meshllama from Python: tensor-parallel Llama inference in C behind Hugging Face's causal-LM
interface. docs/PYTHON.md.

    model, tok = meshllama.from_pretrained("models/SmolLM2-135M-Instruct.Q4_1.gguf", meshllama.Mesh(tp=2))
    ids = tok("The capital of France is", return_tensors="pt")
    print(tok.decode(model.generate(**ids, max_new_tokens=20)[0]))
"""
from ._core import ArgumentError, Mesh, MeshllamaError, UnsupportedError, version
from .model import MeshCache, MeshllamaForCausalLM, build_model, from_pretrained, load_tokenizer

__version__ = version()

__all__ = ["ArgumentError", "Mesh", "MeshCache", "MeshllamaError", "MeshllamaForCausalLM", "UnsupportedError",
           "build_model", "from_pretrained", "load_tokenizer", "version"]

"""The cffi binding reads include/meshllama.h itself: every declared function resolves in the
library, the header and the library are the same version, and the header reader refuses what
it does not understand instead of guessing."""
import pytest

import meshllama
from meshllama import _ffi


def declared_functions():
    return sorted(key.split(" ", 1)[1] for key in _ffi.ffi._parser._declarations if key.startswith("function "))


def test_every_header_function_resolves():
    names = declared_functions()
    assert len(names) > 40, names  # the whole public API, not a truncated parse
    for name in names:
        assert callable(getattr(_ffi.lib, name)), name


def test_header_and_library_agree_on_version():
    assert meshllama.version() == _ffi.HEADER_STRINGS["MESHLLAMA_VERSION"]


def test_header_reader_rejects_unknown_directives():
    with pytest.raises(_ffi.HeaderError, match="preprocessor line"):
        _ffi.cdef_from_header("#if FOO > 1\nint x(void);\n#endif\n", "t.h")
    with pytest.raises(_ffi.HeaderError, match="unterminated"):
        _ffi.cdef_from_header("#ifndef G\nint x(void);\n", "t.h")
    cdef, strings = _ffi.cdef_from_header('#ifndef G\n#define G\n#define V "1.2"\n#define N 3\n'
                                          '#ifdef __cplusplus\nextern "C" {\n#endif\nint x(void); /* c */\n#endif\n')
    assert strings == {"V": "1.2"} and "#define N 3" in cdef and "extern" not in cdef and "int x(void);" in cdef


def test_status_names_and_errors():
    with pytest.raises(meshllama.MeshllamaError) as e:
        meshllama.from_pretrained("/nonexistent/model/dir")
    assert e.value.code == "ML_ERR_IO" and "/nonexistent/model/dir" in str(e.value)


@pytest.mark.parametrize("kwargs, match", [
    (dict(rows=2), "both rows and cols"),
    (dict(rows=2, cols=2, tp=3), "disagrees"),
    (dict(tp=2, act="fp8"), "act="),
    (dict(tp=2, kv="int8"), "kv="),
    (dict(tp=2, backend="nccl"), "backend="),
    (dict(tp=-1), "non-negative"),
])
def test_mesh_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        meshllama.Mesh(**kwargs)


def test_mesh_shapes():
    assert meshllama.Mesh(2, 4).tp == 8
    assert meshllama.Mesh(tp=3).tp == 3
    assert meshllama.Mesh.of(2).tp == 2
    with pytest.raises(TypeError):
        meshllama.Mesh.of("cuda")


def test_installed_package_uses_its_own_library():
    """.ci/run sets MESHLLAMA_EXPECT_INSTALLED=1 after `pip install .`."""
    import os
    if os.environ.get("MESHLLAMA_EXPECT_INSTALLED") != "1":
        pytest.skip("running from the source tree (scripts/test.sh)")
    package = os.path.dirname(meshllama.__file__)
    assert "site-packages" in package
    assert os.path.dirname(_ffi.library_path()) == package
    assert os.path.dirname(os.path.dirname(_ffi.header_path())) == package

"""The project's compiled code leaves the floating-point environment alone, and the project compiles
into a folder of its own with its own flags: PyTensor's settings and shared cache stay the user's.

Modules linked with -ffast-math carry gcc's crtfastmath.o, which sets flush-to-zero and
denormals-are-zero for the whole process when loaded; the project once compiled with it into
PyTensor's shared ~/.pytensor, so every later process using PyTensor's C linker flushed denormals
(float32 sigmoid(-88) = 0 instead of 6.05e-39). The processes here get a home folder of their own
(PyTensor's default cache is then empty), and the project's usual compile folder, so its modules are
loaded, not rebuilt.
"""
import ast
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from scipy.special import expit

from gpu_ops import toolchain
from recsys_core.backend import compile_function

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIGMOID_AT = [-88.0, -87.0, -10.0, 0.0, 10.0]

# Plain PyTensor, nothing of the project: its C linker (Numba is PyTensor 3's default) and its default cache.
PLAIN_PYTENSOR = '''
import numpy as np, pytensor, pytensor.tensor as pt
from pytensor.compile.mode import Mode
x = pt.vector('x', dtype='float32')
f = pytensor.function([x], pt.sigmoid(x), mode=Mode(linker='cvm', optimizer='fast_run'))
print('SIGMOID', f(np.float32({at!r})).tolist())
print('DENORMAL', float(np.float32(1e-39) * np.float32(1.0)))
print('PYTENSOR_COMPILEDIR', str(pytensor.config.compiledir))
'''.format(at=SIGMOID_AT)

PROJECT_FIT = '''
import os, sys
sys.path.insert(0, {root!r})
import numpy as np
from recsys_core import backend
backend.configure('cpu')
import pytensor
from pytensor.link.c import cmodule
from gpu_ops import toolchain
from gru4rec import GRU4Rec
from recsys_core.synthetic import generate_sessions
flags = pytensor.config.gcc__cxxflags
GRU4Rec(layers=[32], batch_size=16, n_sample=32, n_epochs=1, loss='cross-entropy', final_act='softmax').fit(
    generate_sessions(n_items=100, n_sessions=200, seed=3), verbose=False)
print('PROJECT_DENORMAL', float(np.float32(1e-39) * np.float32(1.0)))
with open('/proc/self/maps') as maps:
    loaded = {{line.split()[-1] for line in maps if line.rstrip().endswith('.so')}}
print('PROJECT_MODULES', sum(path.startswith(toolchain.compile_dir() + os.sep) for path in loaded))
base = pytensor.config.base_compiledir
print('PYTENSOR_CACHE_AFTER_FIT', sorted(os.listdir(base)) if os.path.exists(base) else [])
print('PYTENSOR_SETTINGS_KEPT', pytensor.config.gcc__cxxflags == flags, cmodule._module_cache is None)
print('PROJECT_COMPILEDIR', toolchain.compile_dir())
'''.format(root=ROOT)


def _run(code, env):
    out = subprocess.run([sys.executable, '-c', textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True,
                         env=env, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    values = {}
    for line in out.stdout.splitlines():
        key, _, value = line.partition(' ')
        if key.isupper():
            values[key] = ast.literal_eval(value) if key in ('SIGMOID', 'PYTENSOR_CACHE_AFTER_FIT') else value
    return values


def _isolated_env(tmp_path):
    """A home folder of its own (PyTensor's default cache ~/.pytensor inside it, empty), and the
    project's compile folder and GEMM wrapper as this test process has them (already built)."""
    env = {k: v for k, v in os.environ.items() if k not in ('PYTENSOR_FLAGS', 'PYTENSORRC', 'RECSYS_BACKEND',
                                                             'RECSYS_DEVICE')}
    home = tmp_path / 'home'
    home.mkdir()
    env.update(HOME=str(home), XDG_CACHE_HOME=toolchain.cache_home(), RECSYS_COMPILEDIR=toolchain.compile_dir())
    return env


@pytest.fixture(scope='module')
def after_project(tmp_path_factory):
    """A process that trains a small GRU4Rec, then runs plain PyTensor; then a second process with
    plain PyTensor alone (the same home folder, so the same PyTensor cache)."""
    if not os.path.exists('/proc/self/maps'):
        pytest.skip('needs /proc/self/maps (Linux)')
    env = _isolated_env(tmp_path_factory.mktemp('fp'))
    project = _run(PROJECT_FIT + PLAIN_PYTENSOR, env)
    plain = _run(PLAIN_PYTENSOR, env)
    return project, plain


def _expected_sigmoid():
    return expit(np.float64(SIGMOID_AT)).astype('float32')


def test_denormals_survive_in_the_process_that_trains(after_project):
    project, _ = after_project
    assert float(project['PROJECT_DENORMAL']) != 0.0, 'a loaded module set flush-to-zero (crtfastmath)'
    assert float(project['DENORMAL']) != 0.0
    sigmoid = np.float32(project['SIGMOID'])
    assert sigmoid[0] > 0  # 6.05e-39, a float32 denormal
    np.testing.assert_allclose(sigmoid, _expected_sigmoid(), rtol=1e-6, atol=0)
    assert int(project['PROJECT_MODULES']) > 0, 'the project loaded no module from its compile folder'


def test_a_later_plain_pytensor_process_computes_as_on_a_clean_machine(after_project):
    project, plain = after_project
    assert float(plain['DENORMAL']) != 0.0
    np.testing.assert_allclose(np.float32(plain['SIGMOID']), _expected_sigmoid(), rtol=1e-6, atol=0)
    assert plain['SIGMOID'] == project['SIGMOID']
    assert project['PYTENSOR_CACHE_AFTER_FIT'] == [], 'the project wrote into PyTensor\'s cache'
    assert project['PYTENSOR_SETTINGS_KEPT'] == 'True True'
    pytensor_dir, project_dir = project['PYTENSOR_COMPILEDIR'], project['PROJECT_COMPILEDIR']
    assert plain['PYTENSOR_COMPILEDIR'] == pytensor_dir
    assert not project_dir.startswith(pytensor_dir) and not pytensor_dir.startswith(project_dir)


@pytest.mark.parametrize('case', ['default', 'XDG_CACHE_HOME', 'base_compiledir', 'RECSYS_COMPILEDIR'])
def test_the_compile_folder_is_the_projects_own(case, tmp_path):
    """compile_dir's rules, in fresh processes: ~/.cache, $XDG_CACHE_HOME, under a base_compiledir the
    user set, $RECSYS_COMPILEDIR; never PyTensor's compiledir, and reading it creates nothing."""
    env = {k: v for k, v in os.environ.items() if k not in ('PYTENSOR_FLAGS', 'PYTENSORRC', 'XDG_CACHE_HOME',
                                                             'RECSYS_COMPILEDIR')}
    env['HOME'] = str(tmp_path / 'home')
    root = {'default': tmp_path / 'home' / '.cache', 'XDG_CACHE_HOME': tmp_path / 'xdg',
            'base_compiledir': tmp_path / 'base', 'RECSYS_COMPILEDIR': tmp_path / 'mine'}[case]
    if case == 'XDG_CACHE_HOME':
        env['XDG_CACHE_HOME'] = str(root)
    elif case == 'base_compiledir':
        env['PYTENSOR_FLAGS'] = 'base_compiledir={}'.format(root)
    elif case == 'RECSYS_COMPILEDIR':
        env.update(RECSYS_COMPILEDIR=str(root), PYTENSOR_FLAGS='base_compiledir={}'.format(tmp_path / 'base'))
    out = subprocess.run([sys.executable, '-c', 'import os, pytensor; from gpu_ops import toolchain; '
                          'print(toolchain.compile_dir()); print(os.listdir({!r})); '
                          'print(pytensor.config.compiledir)'.format(str(tmp_path))],
                         cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    project_dir, listed, pytensor_dir = out.stdout.splitlines()[-3:]
    assert listed == '[]'  # nothing created by asking
    if case == 'RECSYS_COMPILEDIR':
        assert project_dir == str(root)
    else:
        assert os.path.dirname(project_dir) == str(root / 'recsys_pytensor')
        assert os.path.basename(project_dir) == os.path.basename(pytensor_dir)  # PyTensor's platform name
    assert not project_dir.startswith(pytensor_dir) and not pytensor_dir.startswith(project_dir)


def _pytensor_state():
    from pytensor.link.c import cmodule
    return (pytensor.config.gcc__cxxflags, pytensor.config._config_var_dict['compiledir'].__dict__.get('val'),
            cmodule._module_cache)


def test_project_compilation_restores_pytensors_settings_even_on_errors():
    before = _pytensor_state()
    x = pt.vector('x')
    f = compile_function([x], pt.sigmoid(x) * 2)
    np.testing.assert_allclose(f(np.float32([-88, 0])), 2 * expit(np.float64([-88, 0])), rtol=1e-6)
    assert _pytensor_state() == before
    with pytest.raises(RuntimeError):
        with toolchain.project_compilation():
            with toolchain.project_compilation():  # nested: the outer block holds
                assert pytensor.config.gcc__cxxflags == toolchain.CXXFLAGS
                assert str(pytensor.config.compiledir) == os.path.realpath(toolchain.compile_dir())
            assert pytensor.config.gcc__cxxflags == toolchain.CXXFLAGS
            raise RuntimeError()
    assert _pytensor_state() == before


def test_the_flags_never_name_what_links_crtfastmath():
    flags = toolchain.CXXFLAGS.split()
    assert not {'-ffast-math', '-funsafe-math-optimizations', '-Ofast'} & set(flags)
    assert '-D__FAST_MATH__' in flags and '-fno-math-errno' in flags  # glibc's vector exp/tanh stay declared

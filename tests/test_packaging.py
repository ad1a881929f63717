"""The wheel: built from this checkout, installed into a fresh virtual environment, every package
imports from there and every front end answers -h."""
import glob
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FRONT_ENDS = ['run', 'paropt', 'recommend', 'compare', 'gru4rec.preprocess', 'gru4rec.reproduce', 'nextitnet.split',
              'stackrec.pipeline', 'peercollab.split', 'peercollab.release', 'recsys_core.synthetic']


def project_packages():
    """Every folder of the checkout with an __init__.py (what the wheel must hold), as dotted names."""
    found = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if not d.startswith(('.', '_')) and d not in ('tests', 'benchmarks', 'build')
                       and not os.path.islink(os.path.join(dirpath, d))]
        if '__init__.py' in filenames and dirpath != ROOT:
            found.append(os.path.relpath(dirpath, ROOT).replace(os.sep, '.'))
    return sorted(found)


@pytest.mark.slow
def test_wheel_installs_every_package_and_front_end(tmp_path):
    packages = project_packages()
    assert {'gru4rec', 'peercollab', 'stackrec', 'recsys_core.tuning'} <= set(packages)
    # from a copy of the tracked files: a build/ folder left in the checkout would lend the wheel its files
    tracked = subprocess.run(['git', 'ls-files', '-z'], cwd=ROOT, check=True, capture_output=True).stdout.decode()
    source = tmp_path / 'source'
    for name in filter(None, tracked.split('\0')):
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if os.path.islink(os.path.join(ROOT, name)):
            os.symlink(os.readlink(os.path.join(ROOT, name)), target)
        elif os.path.isfile(os.path.join(ROOT, name)):
            shutil.copy2(os.path.join(ROOT, name), target)
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps', '-w', str(tmp_path / 'dist'), str(source)],
                   check=True, capture_output=True, text=True)
    wheel, = glob.glob(str(tmp_path / 'dist' / '*.whl'))
    venv = tmp_path / 'venv'
    # the dependencies come from this interpreter's site-packages; the project only from the wheel
    subprocess.run([sys.executable, '-m', 'venv', '--system-site-packages', str(venv)], check=True)
    python = str(venv / 'bin' / 'python')
    subprocess.run([python, '-m', 'pip', 'install', '-q', '--no-deps', '--no-index', wheel], check=True,
                   capture_output=True, text=True)
    site = subprocess.run([python, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
                          check=True, capture_output=True, text=True).stdout.strip()
    check = textwrap.dedent('''
        import importlib, os, sys
        site = sys.argv[1]
        for name in sys.argv[2:]:
            module = importlib.import_module(name)
            assert os.path.realpath(module.__file__).startswith(os.path.realpath(site)), (name, module.__file__)
        import gru4rec.reproduce as r
        assert os.path.isfile(os.path.join(r.PARAMFILES, 'rsc15_xe_shared_100_best.py'))
        assert os.path.isfile(r.PUBLISHED)
        import gpu_ops
        assert os.path.isfile(os.path.join(os.path.dirname(gpu_ops.__file__), 'c', 'sampled_loss.h'))
        print('OK')
    ''')
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    out = subprocess.run([python, '-c', check, site] + packages + ['run', 'paropt', 'recommend'],
                         cwd=str(tmp_path), env=env, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip().endswith('OK'), out.stderr[-3000:]
    for front_end in FRONT_ENDS:
        out = subprocess.run([python, '-m', front_end, '-h'], cwd=str(tmp_path), env=env, capture_output=True, text=True)
        assert out.returncode == 0 and 'usage' in out.stdout.lower(), (front_end, out.stdout[-500:], out.stderr[-2000:])

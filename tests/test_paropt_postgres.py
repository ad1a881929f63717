"""Two paropt workers on one study in a real PostgreSQL server; one is killed mid-trial.

The server is the Debian postgresql package (installed by `bash setup.sh test`), started for this
module on loopback in a throwaway folder and stopped afterwards.
"""
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import optuna
import pytest
from conftest import ROOT
from optuna.trial import TrialState

from recsys_core.errors import UserError
from recsys_core.tuning.study import open_storage

pytestmark = pytest.mark.slow  # starts a PostgreSQL server and paropt.py workers

FIXED = 'loss=bpr-max,constrained_embedding=True,batch_size=16,n_sample=32,n_epochs=3,layers=32'
SPACE = '{"name": "learning_rate", "dtype": "float", "values": [0.01, 0.3]}\n'
N_TRIALS = 4


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture(scope='module')
def postgres_url():
    binaries = sorted(glob.glob('/usr/lib/postgresql/*/bin/initdb'))
    if not binaries:
        pytest.fail('PostgreSQL server binaries not found: `bash setup.sh test` installs the Debian package postgresql')
    bindir = os.path.dirname(binaries[-1])
    folder = tempfile.mkdtemp(prefix='paropt-pg-')
    as_user = []
    if os.getuid() == 0:  # the server refuses to run as root
        user = pwd.getpwnam('postgres')
        os.chown(folder, user.pw_uid, user.pw_gid)
        as_user = ['runuser', '-u', 'postgres', '--']
    data, port = os.path.join(folder, 'data'), free_port()
    run = lambda *cmd: subprocess.run(as_user + list(cmd), check=True, capture_output=True, text=True, timeout=120)
    try:
        run(bindir + '/initdb', '-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8')
        run(bindir + '/pg_ctl', '-D', data, '-l', os.path.join(folder, 'server.log'), '-w', '-o',
            '-p {} -k {} -c listen_addresses=127.0.0.1'.format(port, folder), 'start')
    except subprocess.CalledProcessError as e:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.fail('Could not start PostgreSQL: {}\n{}'.format(e, e.stderr))
    try:
        yield 'postgresql://postgres@127.0.0.1:{}/postgres'.format(port)
    finally:
        subprocess.run(as_user + [bindir + '/pg_ctl', '-D', data, '-m', 'immediate', 'stop'], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def children_of(pid):
    kids = []
    for stat in glob.glob('/proc/[0-9]*/stat'):
        try:
            with open(stat) as f:
                fields = f.read().rsplit(')', 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.split('/')[2]))
    return kids


def alive(pid):
    try:
        with open('/proc/{}/stat'.format(pid)) as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError:
        return False


def test_two_workers_share_a_study_and_survive_a_killed_worker(postgres_url, tiny_files, tmp_path):
    (tmp_path / 'space.json').write_text(SPACE)

    def worker(i):
        cmd = [sys.executable, 'paropt.py', tiny_files['train'], tiny_files['test'], '-fp', FIXED,
               '-opf', str(tmp_path / 'space.json'), '-nt', str(N_TRIALS), '--storage', postgres_url,
               '--study-name', 'shared', '--seed', str(i), '--heartbeat', '1', '--no-final-eval',
               '-o', str(tmp_path / 'out{}'.format(i))]
        return subprocess.Popen(cmd, cwd=ROOT, stdout=open(str(tmp_path / 'w{}.out'.format(i)), 'w'),
                                stderr=open(str(tmp_path / 'w{}.err'.format(i)), 'w'))

    victim = worker(0)
    time.sleep(2)  # let the first worker create the study
    survivor = worker(1)
    study = storage = None
    deadline = time.time() + 300
    tag = ':{}'.format(victim.pid)
    while time.time() < deadline:  # wait until the victim is inside a trial, then kill it
        assert victim.poll() is None, (tmp_path / 'w0.err').read_text()[-3000:]
        try:  # the product's opening: this process too may race the workers to create the tables
            storage = storage or open_storage(postgres_url, heartbeat_interval=1)
            study = study or optuna.load_study(study_name='shared', storage=storage)
            running = [t for t in study.get_trials(states=(TrialState.RUNNING,))
                       if t.user_attrs.get('worker', '').endswith(tag)]
        except (KeyError, UserError):
            running = []
        if running and children_of(victim.pid):
            break
        time.sleep(0.2)
    time.sleep(1.0)
    trial_processes = children_of(victim.pid)
    assert trial_processes and running
    killed_number = running[0].number
    os.kill(victim.pid, signal.SIGKILL)  # the worker only: its run.py must die with it
    victim.wait()
    time.sleep(2)
    assert not any(alive(p) for p in trial_processes)

    assert survivor.wait(timeout=600) == 0, (tmp_path / 'w1.err').read_text()[-3000:]
    trials = optuna.load_study(study_name='shared', storage=storage).get_trials()
    by_number = {t.number: t for t in trials}
    killed = by_number[killed_number]
    assert killed.state == TrialState.FAIL
    retries = [t for t in trials if t.system_attrs.get('retry_history') == [killed_number]]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE and retries[0].params == killed.params
    # every trial is accounted for: completed, or failed and completed by its retry; nothing left running
    assert all(t.state == TrialState.COMPLETE or t.number == killed_number for t in trials)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert N_TRIALS <= len(complete) <= N_TRIALS + 1  # another process may overshoot by one trial
    workers = {t.user_attrs['worker'] for t in complete}
    assert any(w.endswith(tag) for w in workers) or killed.user_attrs['worker'].endswith(tag)
    assert any(w.endswith(':{}'.format(survivor.pid)) for w in workers)
    assert '[paropt] trial {} '.format(retries[0].number) in (tmp_path / 'w1.err').read_text()

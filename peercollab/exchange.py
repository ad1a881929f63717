"""Peers in separate processes exchange their pre-merge weights through a folder: the release's
protocol (each process writes its weights after an epoch and polls for its peer's), made robust.

- Every file is written atomically (a temporary name, then a rename), so a reader never sees half
  a file.
- A file is named by run, peer and epoch (``RUN.peer2.epoch3.snapshot``) and holds them too; a
  reader takes only the file of its run and of the epoch it waits for, so files of an earlier run
  in the same folder (which the release consumed at once) are never read.
- A file also holds the run's fingerprint (its parameters but the peer, and its training windows):
  a file of the same run, peer and epoch written by a run with other parameters or data (a run_id
  used again) is one clear error, not silently merged.
- A reader waits at most ``timeout`` seconds, then fails with one error naming the peer that
  stopped; its own checkpoint (written before the wait) and files stay as they are, so rerunning
  the same commands resumes both peers.
- A peer removes its own snapshots once the peer that reads them has moved on (at most two per
  peer remain, not one per epoch).
"""
import glob
import os
import pickle
import re
import time

from recsys_core.errors import UserError
from recsys_core.persistence import write_atomic

TAG = 'pytensor-recsys-peer-snapshot'
VERSION = 1
SUFFIX = '.snapshot'


class DirectoryExchange:
    """Snapshots of peers' weights in ``folder`` for the run ``run_id``."""

    def __init__(self, folder, run_id, timeout, poll=0.05, fingerprint=None):
        if not run_id or not re.fullmatch(r'[A-Za-z0-9_-]+', str(run_id)):
            raise UserError('The exchange through a folder needs run_id: one name (letters, digits, _ and -) shared '
                            'by the peers of one run and no other (python -m peercollab.release --processes picks '
                            'one), not {!r}'.format(run_id))
        self.folder, self.run_id, self.timeout, self.poll = folder, str(run_id), float(timeout), poll
        self.fingerprint = fingerprint
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as e:
            raise UserError('Cannot create the exchange folder {}: {}'.format(folder, e.strerror or e)) from None

    def path(self, peer, epoch):
        return os.path.join(self.folder, '{}.peer{}.epoch{}{}'.format(self.run_id, peer, epoch, SUFFIX))

    def publish(self, peer, epoch, weights):
        """Write ``peer``'s weights after ``epoch`` (replacing a file of the same name atomically)."""
        write_atomic(self.path(peer, epoch), {'format': TAG, 'version': VERSION, 'run': self.run_id, 'peer': peer,
                                              'epoch': epoch, 'fingerprint': self.fingerprint,
                                              'weights': dict(weights)})

    def _read(self, peer, epoch):
        """The weights in ``peer``'s file of ``epoch`` when it is this run's, else None."""
        try:
            with open(self.path(peer, epoch), 'rb') as f:
                payload = pickle.load(f)
        except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ValueError):
            return None
        if not isinstance(payload, dict) or payload.get('format') != TAG or payload.get('version') != VERSION:
            return None
        if (payload.get('run'), payload.get('peer'), payload.get('epoch')) != (self.run_id, peer, epoch):
            return None  # another run's (or a misnamed) file: stale, never mixed in
        if payload.get('fingerprint') != self.fingerprint:
            raise UserError('{} was written by a run with other parameters or training data under the same run_id '
                            '{!r}: give this run its own run_id (or remove the old files)'.format(
                                self.path(peer, epoch), self.run_id))
        return payload['weights']

    def receive(self, peer, epoch, waiting_peer):
        """``peer``'s weights after ``epoch``, waiting for them at most ``timeout`` seconds."""
        deadline = time.monotonic() + self.timeout
        while True:
            weights = self._read(peer, epoch)
            if weights is not None:
                return weights
            if time.monotonic() >= deadline:
                raise UserError(
                    'Peer {} waited {:g} s for the weights of peer {} after epoch {} ({}, run {}) and none came: '
                    'peer {} has stopped or is far behind. The checkpoints are intact: restart the stopped peer and '
                    'run this one again with the same command to resume both.'.format(
                        waiting_peer, self.timeout, peer, epoch + 1, self.path(peer, epoch), self.run_id, peer))
            time.sleep(self.poll)

    def has(self, peer, epoch):
        """Whether ``peer`` has written its weights after ``epoch`` in this run (the name says it)."""
        return os.path.isfile(self.path(peer, epoch))

    def discard(self, peer, before_epoch):
        """Remove ``peer``'s snapshots of epochs before ``before_epoch``."""
        prefix = '{}.peer{}.epoch'.format(self.run_id, peer)
        pattern = re.compile(re.escape(prefix) + r'(\d+)' + re.escape(SUFFIX) + '$')
        for path in glob.glob(os.path.join(glob.escape(self.folder), prefix + '*' + SUFFIX)):
            match = pattern.search(os.path.basename(path))
            if match and int(match.group(1)) < before_epoch:
                try:
                    os.remove(path)
                except OSError:
                    pass

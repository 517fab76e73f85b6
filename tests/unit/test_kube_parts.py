"""How devstack turns k8s.io/kubernetes's go.mod into one that builds from the module proxy."""

from devstack.kube import published_go_mod, staging_replaces

GO_MOD = """module k8s.io/kubernetes

require (
\tk8s.io/api v0.0.0
\tk8s.io/klog/v2 v2.130.1
\tk8s.io/kube-openapi v0.0.0-20250710124328-f3f2b991d03b
\tk8s.io/utils v0.0.0
)

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/client-go => ./staging/src/k8s.io/client-go
)
"""


def test_staging_modules_are_named_by_their_replace_lines() -> None:
    assert staging_replaces(GO_MOD) == ["k8s.io/api", "k8s.io/client-go"]


def test_staged_placeholders_become_the_published_release_and_nothing_else_changes() -> None:
    out = published_go_mod(GO_MOD, "1.34.4")
    assert "\tk8s.io/api v0.34.4\n" in out
    assert "./staging" not in out
    # A pseudo-version stays, and so does a v0.0.0 that no staging replace line names.
    assert "\tk8s.io/kube-openapi v0.0.0-20250710124328-f3f2b991d03b\n" in out
    assert "\tk8s.io/utils v0.0.0\n" in out
    assert "\tk8s.io/klog/v2 v2.130.1\n" in out

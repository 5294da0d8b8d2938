"""tsmap.malloc: glibc's malloc tuned once per process, unless opted out or impossible."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import pytest

from tsmap import malloc

ON_GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
needs_glibc = pytest.mark.skipif(not ON_GLIBC, reason="glibc only")


@pytest.fixture
def fresh(monkeypatch):
    """The module as if never called, with no malloc settings in the environment."""
    monkeypatch.setattr(malloc, "_result", None)
    monkeypatch.setattr(malloc, "_reason", "not called yet")
    for name in (malloc.OPT_OUT_ENV, "GLIBC_TUNABLES", "LD_PRELOAD", *malloc._USER_MALLOC_ENV):
        monkeypatch.delenv(name, raising=False)
    return malloc


@needs_glibc
def test_applies_on_glibc_and_is_idempotent(fresh, monkeypatch):
    calls = []
    real = fresh._libc

    def counting_libc():
        calls.append(1)
        return real()

    monkeypatch.setattr(fresh, "_libc", counting_libc)
    assert fresh.tune_malloc() is True
    assert fresh.tuning_status() == "applied"
    assert fresh.tune_malloc() is True
    assert len(calls) == 1  # the second call does nothing


@pytest.mark.parametrize("value", ["1", "yes"])
def test_opt_out_env(fresh, monkeypatch, value):
    monkeypatch.setenv(fresh.OPT_OUT_ENV, value)
    monkeypatch.setattr(fresh, "_libc", lambda: pytest.fail("mallopt must not be reached"))
    assert fresh.tune_malloc() is False
    assert fresh.OPT_OUT_ENV in fresh.tuning_status()


@needs_glibc
@pytest.mark.parametrize("value", ["", "0"])
def test_opt_out_env_off(fresh, monkeypatch, value):
    monkeypatch.setenv(fresh.OPT_OUT_ENV, value)
    assert fresh.tune_malloc() is True


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=1000000"),
        ("MALLOC_ARENA_MAX", "2"),
        ("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"),
    ],
)
def test_leaves_a_tuned_or_replaced_malloc_alone(fresh, monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    monkeypatch.setattr(fresh, "_libc", lambda: pytest.fail("mallopt must not be reached"))
    assert fresh.tune_malloc() is False


@needs_glibc
def test_other_tunables_do_not_count(fresh, monkeypatch):
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.rtld.optional_static_tls=1024")
    assert fresh.tune_malloc() is True


def test_no_op_off_glibc(fresh, monkeypatch):
    monkeypatch.setattr(fresh, "_libc", lambda: None)
    monkeypatch.setattr(fresh.sys, "platform", "linux")
    assert fresh.tune_malloc() is False
    assert "glibc" in fresh.tuning_status()


def test_refused_setting_is_reported(fresh, monkeypatch):
    class FakeLibc:
        @staticmethod
        def mallopt(param, value):
            return 0 if param == fresh.M_MMAP_THRESHOLD else 1

    monkeypatch.setattr(fresh, "_libc", FakeLibc)
    monkeypatch.setattr(fresh.sys, "platform", "linux")
    assert fresh.tune_malloc() is False
    assert str(fresh.M_MMAP_THRESHOLD) in fresh.tuning_status()


FAULTS_SCRIPT = textwrap.dedent(
    """
    import ctypes, resource, sys
    from tsmap.malloc import tune_malloc
    print(tune_malloc(), file=sys.stderr)
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    size = 64 << 20  # above glibc's largest dynamic mmap threshold (32 MiB)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(8):
        p = libc.malloc(size)
        ctypes.memset(p, 1, size)
        libc.free(p)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """
)


def _faults(opt_out: bool) -> int:
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "LD_PRELOAD", malloc.OPT_OUT_ENV)}
    if opt_out:
        env[malloc.OPT_OUT_ENV] = "1"
    out = subprocess.run([sys.executable, "-c", FAULTS_SCRIPT], capture_output=True, text=True, env=env, check=True)
    return int(out.stdout.strip())


@needs_glibc
def test_large_buffers_are_reused_not_faulted_in_again():
    """Page faults, not time: 8 x malloc/touch/free of 64 MiB faults its pages in 8 times by
    default (a fresh mmap each time) and about once when tuned."""
    pages = (64 << 20) // os.sysconf("SC_PAGE_SIZE")
    untuned, tuned = _faults(opt_out=True), _faults(opt_out=False)
    assert untuned > 6 * pages
    assert tuned < 2 * pages

"""Backend decisions: one place, plain values, and the accelerator policy reachable on CPU."""
import pytest

from jaxcond import backend
from jaxcond.errors import ConfigError


def test_cpu_policy_and_forcing():
  assert backend.platform() == "cpu"
  assert backend.policy() == "cpu" and backend.is_cpu()
  assert backend.eval_execution() == ("host", "unroll")
  assert backend.conv_grad_as_matmul()
  with backend.force("accelerator"):
    assert backend.policy() == "accelerator"
    assert backend.eval_execution() == ("device", "vmap")
    assert not backend.conv_grad_as_matmul()
  assert backend.policy() == "cpu"


def test_env_policy(monkeypatch):
  monkeypatch.setenv("JAXCOND_BACKEND_POLICY", "accelerator")
  assert backend.policy() == "accelerator"
  monkeypatch.setenv("JAXCOND_BACKEND_POLICY", "gpu")
  with pytest.raises(ConfigError, match="JAXCOND_BACKEND_POLICY"):
    backend.policy()


def test_device_memory_is_the_host_memory_on_cpu():
  n = backend.device_memory_bytes()
  assert n is not None and n > 1 << 30

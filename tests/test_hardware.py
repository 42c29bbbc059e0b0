"""The processor's fastest path, the precision an open LLM computes in, and the measured peak."""

import pytest
import torch

import hardware
import lora

AVX2 = hardware.Cpu("a laptop", frozenset({"avx2", "fma"}))
ZEN4 = hardware.Cpu("a Zen 4", frozenset({"avx2", "avx512f", "avx512_bf16", "avx512_vnni"}))
XEON = hardware.Cpu("a Xeon", frozenset({"avx2", "avx512f", "avx512_bf16", "amx_bf16"}))


@pytest.fixture
def on(monkeypatch):
    """Pretend to run on `cpu`, whose bf16 torch confirms or not."""

    def pretend(cpu: hardware.Cpu, torch_agrees: bool) -> None:
        monkeypatch.setattr(hardware, "cpu", lambda: cpu)
        monkeypatch.setattr(hardware, "torch_bf16", lambda: torch_agrees)

    return pretend


def test_the_fastest_path_is_named_by_the_flags():
    assert (AVX2.fastest, ZEN4.fastest, XEON.fastest) == ("avx2", "avx512_bf16", "amx")
    assert (AVX2.bf16, ZEN4.bf16, XEON.bf16) == (False, True, True)


@pytest.mark.parametrize("cpu, torch_agrees, expected", [
    (AVX2, False, torch.float32),  # bf16 would be emulated there, and slower
    (ZEN4, True, torch.bfloat16),
    (XEON, True, torch.bfloat16),
    (XEON, False, torch.float32),  # the flag is there, but the system keeps the tiles off
])
def test_a_cpu_trains_in_bf16_only_where_it_multiplies_it_natively(on, cpu, torch_agrees,
                                                                     expected):
    on(cpu, torch_agrees)
    assert hardware.precision("cpu") == expected


@pytest.mark.parametrize("bf16, expected", [(True, torch.bfloat16), (False, torch.float16)])
def test_a_gpu_computes_in_bf16_or_in_float16_where_it_has_no_bf16(monkeypatch, bf16,
                                                                   expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16)
    assert hardware.precision("cuda") == expected
    monkeypatch.setenv("PRICER_LLM_PRECISION", "float32")
    assert hardware.precision("cuda") == torch.float32


def test_the_setting_overrides_the_choice(on, monkeypatch, tmp_path):
    on(ZEN4, True)
    monkeypatch.setenv("PRICER_LLM_PRECISION", "float32")
    assert hardware.precision("cpu") == torch.float32
    config = lora.sft_config(tmp_path)
    assert not config.bf16
    monkeypatch.setenv("PRICER_LLM_PRECISION", "bf16")
    assert hardware.precision("cpu") == torch.bfloat16
    monkeypatch.setenv("PRICER_LLM_PRECISION", "fp8")
    with pytest.raises(ValueError, match="PRICER_LLM_PRECISION must be one of auto, float32, bf16"):
        hardware.precision("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU's training settings")
def test_training_takes_bf16_autocast_over_float32_weights_where_native(on, tmp_path):
    on(ZEN4, True)
    assert lora.sft_config(tmp_path).bf16  # mixed precision: the weights stay float32
    on(AVX2, False)
    assert not lora.sft_config(tmp_path).bf16


def test_the_peak_is_measured_per_precision():
    float32 = hardware.matmul_peak("float32", threads=1, size=256, seconds=0.2)
    assert 0.1 < float32 < 10_000  # GFLOP/s of one core

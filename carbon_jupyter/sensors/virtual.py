"""Whether this machine is a virtual machine, and the per-vCPU power figures for one.

In a virtual machine the CPU model name is the host's (often without its model
number, ``AMD EPYC``), while the guest has only a few of the host's threads: a
package TDP, or a per-core default times the cores the guest sees, is far off.
There the CPU model estimates per vCPU instead (see
:mod:`carbon_jupyter.sensors.cpu_model`), with the coefficients of Cloud Carbon
Footprint (``carbon_jupyter/data/vcpu_power.csv``)::

    power_w = vcpus * (min_w + utilisation * (max_w - min_w))

**Is it a virtual machine?** First that answers:

1. ``CARBON_JUPYTER_VIRTUAL`` - ``1``/``true``/``yes`` or ``0``/``false``/``no``
   (anything else raises ConfigError);
2. the ``hypervisor`` CPU flag in ``/proc/cpuinfo`` (set by KVM, Xen HVM,
   Hyper-V, VMware and the clouds built on them);
3. the firmware's DMI strings (``/sys/class/dmi/id/sys_vendor``,
   ``product_name``, ``bios_vendor``, ``bios_version``): a product name with
   ``metal`` in it is a cloud's bare-metal machine; ``QEMU``, ``KVM``,
   ``VMware``, ``Xen``, ``VirtualBox``, ``Parallels``, ``Bochs``,
   ``OpenStack``, ``Amazon``, ``Google Compute Engine`` (or the BIOS vendor
   ``Google``) or Microsoft's ``Virtual Machine`` mean a virtual machine;
4. otherwise bare metal.

**Which cloud?** The DMI strings (``Amazon`` is AWS, ``Google`` is GCP,
``Microsoft Corporation`` with ``Virtual Machine`` is taken as Azure, though a
local Hyper-V guest looks the same), else ``CARBON_JUPYTER_CLOUD_REGION`` and
the providers' own region variables that the carbon-intensity settings read
(:func:`carbon_jupyter.intensity.resolve.cloud_region_variables`). Those
variables never make a machine virtual on their own: ``AWS_REGION`` is often
set on a laptop.

**Which coefficients?** The processor's microarchitecture when its name tells
it (:data:`MICROARCHITECTURE_RULES`)::

    the model name says                          microarchitecture
    Xeon Platinum/Gold/Silver/Bronze N1NN        Skylake (8175M, 8124M, 6148)
    Xeon Platinum/Gold/Silver/Bronze N2NN        Cascade Lake (8259CL, 8275CL)
    Xeon E5/E7-NNNN v2, v3, v4                   Ivy Bridge, Haswell, Broadwell
    Xeon E5-NNNN without a version               Sandy Bridge
    Xeon E-21NN, E-22NN                          Coffee Lake
    EPYC 7NN1, 7NN2 (7571, 7R32, 7B12)           EPYC 1st Gen, EPYC 2nd Gen
    Graviton, Graviton2                          Graviton, Graviton2
    (Arm on AWS, CPU part 0xd08 or 0xd0c)        Graviton, Graviton2

The data file has no other microarchitecture, so, for example, EPYC 3rd
generation, Ice Lake and Graviton3 are unknown. Then the provider's row (AWS and
Azure averages, the GCP median) is used when the provider is known, else the
mean of those three rows. The device's detail says which.
"""

from __future__ import annotations

import csv
import functools
import os
import platform
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import psutil

from carbon_jupyter.errors import ConfigError
from carbon_jupyter.sensors.hardware import cpuinfo_field

VIRTUAL_ENV = "CARBON_JUPYTER_VIRTUAL"
CPUINFO = "/proc/cpuinfo"
DMI_DIR = "/sys/class/dmi/id"

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})

#: (word in a DMI string, what it is, cloud provider or None), checked in this order.
_DMI_HINTS: tuple[tuple[str, str, str | None], ...] = (
    ("amazon ec2", "Amazon EC2", "aws"),
    ("amazon", "Amazon EC2 (Xen)", "aws"),  # older instances: bios_version 4.2.amazon
    ("google compute engine", "Google Compute Engine", "gcp"),
    ("qemu", "QEMU", None),
    ("kvm", "KVM", None),
    ("vmware", "VMware", None),
    ("xen", "Xen", None),
    ("virtualbox", "VirtualBox", None),
    ("innotek", "VirtualBox", None),
    ("parallels", "Parallels", None),
    ("bochs", "Bochs", None),
    ("openstack", "OpenStack", None),
)
_DMI_FILES = ("sys_vendor", "product_name", "bios_vendor", "bios_version")

#: (pattern on the lower-case model name, microarchitecture); the first match wins.
#: Xeon Scalable: the digit after the tier's first is the generation (81xx Skylake,
#: 82xx Cascade Lake); E5/E7 by their version suffix; Xeon E-21xx/E-22xx Coffee Lake;
#: EPYC 7xxN by its last digit (1 Naples, 2 Rome); Graviton by name.
MICROARCHITECTURE_RULES: tuple[tuple[str, str], ...] = (
    (r"\bgraviton2\b", "Graviton2"),
    (r"\bgraviton\b", "Graviton"),
    (r"\b(?:platinum|gold|silver|bronze)\s+\d1\d\d", "Skylake"),
    (r"\b(?:platinum|gold|silver|bronze)\s+\d2\d\d", "Cascade Lake"),
    (r"\be[57]-\d{4}[a-z]*\s*v2\b", "Ivy Bridge"),
    (r"\be[57]-\d{4}[a-z]*\s*v3\b", "Haswell"),
    (r"\be[57]-\d{4}[a-z]*\s*v4\b", "Broadwell"),
    (r"\be5-\d{4}[a-z]*(?!\s*v\d)\b", "Sandy Bridge"),
    (r"\be-2[12]\d\d[a-z]*\b", "Coffee Lake"),
    (r"\bepyc\s+7[0-9a-z]{2}1\b", "EPYC 1st Gen"),
    (r"\bepyc\s+7[0-9a-z]{2}2\b", "EPYC 2nd Gen"),
)
#: Arm ``CPU part`` codes of AWS's Graviton generations in the data file (on AWS only).
_GRAVITON_PARTS = {"0xd08": "Graviton", "0xd0c": "Graviton2"}

_PROVIDER_NAMES = {"aws": "AWS", "gcp": "GCP", "azure": "Azure"}


@dataclass(frozen=True)
class Virtualisation:
    """What :func:`detect` found: ``virtual`` and why, and the cloud provider if known."""

    virtual: bool
    evidence: str
    provider: str | None = None
    provider_evidence: str | None = None


@dataclass(frozen=True)
class VcpuPower:
    """Watts per vCPU at idle (``min_w``) and at full load (``max_w``), and their row.

    ``microarchitecture`` is None when the coefficients are an average;
    ``basis`` says in words which row or rows they come from.
    """

    min_w: float
    max_w: float
    microarchitecture: str | None
    basis: str


def _dmi(dmi_dir: str | os.PathLike[str]) -> dict[str, str]:
    found = {}
    for name in _DMI_FILES:
        try:
            found[name] = Path(dmi_dir, name).read_text(errors="replace").strip()
        except OSError:
            continue
    return found


def _dmi_provider(dmi: Mapping[str, str]) -> tuple[str | None, str | None, str | None]:
    """(what the DMI strings name, its provider, the evidence) or Nones."""
    text = " | ".join(dmi.values()).lower()
    for word, what, provider in _DMI_HINTS:
        if word in text:
            return what, provider, f"DMI {what!r}"
    if dmi.get("bios_vendor", "").lower() == "google":
        return "Google Compute Engine", "gcp", "DMI bios_vendor 'Google'"
    vendor = dmi.get("sys_vendor", "").lower()
    if "microsoft" in vendor and "virtual machine" in dmi.get("product_name", "").lower():
        return "Microsoft Virtual Machine", "azure", "DMI 'Microsoft Corporation Virtual Machine'"
    return None, None, None


def _environment_provider(environ: Mapping[str, str]) -> tuple[str | None, str | None]:
    from carbon_jupyter.intensity.lookup import canonical_provider
    from carbon_jupyter.intensity.resolve import ENV_CLOUD_REGION, cloud_region_variables

    region = environ.get(ENV_CLOUD_REGION, "").strip()
    if ":" in region:
        provider = canonical_provider(region.partition(":")[0])
        if provider is not None:
            return provider, f"{ENV_CLOUD_REGION}={region}"
    found = cloud_region_variables(environ)
    if found:
        variable, key = found[0]
        return key.partition(":")[0], f"{variable} is set"
    return None, None


def _override(environ: Mapping[str, str]) -> bool | None:
    raw = environ.get(VIRTUAL_ENV, "").strip()
    if not raw:
        return None
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise ConfigError(
        f"{VIRTUAL_ENV}={raw!r} is neither 1 nor 0; set 1 for a virtual machine, 0 for bare "
        f"metal, or unset it to detect"
    )


def detect(
    *,
    cpuinfo: str | os.PathLike[str] = CPUINFO,
    dmi_dir: str | os.PathLike[str] = DMI_DIR,
    environ: Mapping[str, str] | None = None,
) -> Virtualisation:
    """Whether this machine is virtual and on which cloud (see the module docstring).

    Raises ConfigError for a bad ``CARBON_JUPYTER_VIRTUAL``.
    """
    env = os.environ if environ is None else environ
    dmi = _dmi(dmi_dir)
    what, provider, provider_evidence = _dmi_provider(dmi)
    if provider is None:
        provider, provider_evidence = _environment_provider(env)
    product = dmi.get("product_name", "")
    override = _override(env)
    if override is not None:
        virtual, evidence = override, f"{VIRTUAL_ENV}={env[VIRTUAL_ENV].strip()}"
    elif "hypervisor" in cpuinfo_field("flags", cpuinfo).split():
        virtual, evidence = True, "the hypervisor CPU flag"
    elif "metal" in product.lower():
        virtual, evidence = False, f"DMI product {product!r}"
    elif what is not None:
        virtual, evidence = True, f"DMI {what!r}"
    else:
        virtual, evidence = False, "no hypervisor flag or DMI hint"
    return Virtualisation(virtual, evidence, provider, provider_evidence)


def microarchitecture(
    model_name: str,
    *,
    provider: str | None = None,
    machine: str | None = None,
    cpu_part: str = "",
) -> str | None:
    """The microarchitecture of the data file that ``model_name`` names; None if none.

    On Arm (``machine`` ``aarch64``/``arm64``, default :func:`platform.machine`)
    on AWS, the ``CPU part`` of ``/proc/cpuinfo`` tells Graviton (``0xd08``)
    from Graviton2 (``0xd0c``); later Gravitons are not in the file.
    """
    name = " ".join(model_name.lower().replace("(r)", " ").replace("(tm)", " ").split())
    for pattern, found in MICROARCHITECTURE_RULES:
        if re.search(pattern, name):
            return found
    arch = (machine if machine is not None else platform.machine()).lower()
    if arch in ("aarch64", "arm64") and provider == "aws":
        return _GRAVITON_PARTS.get(cpu_part.strip().lower())
    return None


@functools.lru_cache(maxsize=1)
def _rows() -> tuple[tuple[str, str, float, float], ...]:
    """(scope, name, min W/vCPU, max W/vCPU) of every row of ``vcpu_power.csv``."""
    text = (resources.files("carbon_jupyter") / "data" / "vcpu_power.csv").read_text()
    rows = []
    for row in csv.DictReader(text.splitlines()):
        try:
            low, high = float(row["min_w_per_vcpu"]), float(row["max_w_per_vcpu"])
        except (TypeError, ValueError):
            continue
        rows.append((row["scope"].strip(), row["name"].strip(), low, high))
    return tuple(rows)


def vcpu_power(model_name: str, *, provider: str | None, arch: str = "") -> VcpuPower:
    """The per-vCPU coefficients for this CPU (see the module docstring).

    ``arch`` is the microarchitecture found by :func:`microarchitecture`, or "".
    """
    rows = _rows()
    for scope, name, low, high in rows:
        if arch and scope == "microarchitecture" and name == arch:
            return VcpuPower(low, high, arch, f"the {arch} row")
    shown = repr(model_name) if model_name else "the CPU model name"
    unknown = f"microarchitecture unknown ({shown} does not name one the data has)"
    providers = [
        (scope, name, low, high) for scope, name, low, high in rows if scope != "microarchitecture"
    ]
    for scope, name, low, high in providers:
        if name == provider:
            kind = "median" if scope.endswith("median") else "average"
            shown_provider = _PROVIDER_NAMES.get(name, name)
            return VcpuPower(low, high, None, f"{unknown}; the {shown_provider} {kind} row")
    described = [
        f"{_PROVIDER_NAMES.get(name, name)} {'median' if scope.endswith('median') else 'average'}"
        for scope, name, _, _ in providers
    ]
    names = (
        ", ".join(described[:-1]) + f" and {described[-1]}" if len(described) > 1 else described[0]
    )
    low = sum(r[2] for r in providers) / len(providers)
    high = sum(r[3] for r in providers) / len(providers)
    return VcpuPower(
        low,
        high,
        None,
        f"{unknown}; the cloud provider is unknown, so the mean of the {names} rows",
    )


def logical_cpus() -> int:
    """The logical CPUs the operating system shows: a virtual machine's vCPUs.

    All of them, not only those this process may run on, since the utilisation
    the model uses is the whole machine's.
    """
    return psutil.cpu_count(logical=True) or os.cpu_count() or 1

"""Config parsing, volume naming, command quoting, and the backend's independence from Textual."""

from __future__ import annotations

import subprocess
import sys

import pytest

from backend.commands import UnsafeArgument, cmd, script
from backend.config import parse_config, parse_size
from backend.errors import ConfigError
from backend.naming import MAX_NAME, is_valid_lvm_name, volume_body

from ..conftest import ROOT

HOSTILE = [
    "$(touch /tmp/isoadmin-canary)", "`id`", "a;b", "a|b", "a&b", "a>b", "it's", 'say "hi"', "two words",
    "new\nline", "tab\tand\rcr", "-rf", "--", "..", "../../etc/passwd", "ﬁle.iso", "ＩＳＯ.iso",
    "x" * 255, "*", "?", "~root", "\x1b[31mred",
]


def test_parse_size():
    assert parse_size(4096) == 4096
    assert parse_size("512M") == 512 << 20
    assert parse_size("64 GiB") == 64 << 30
    assert parse_size("1.5K") == 1536
    for bad in ("lots", "-1", True):
        with pytest.raises(ConfigError):
            parse_size(bad)


def minimal(**dom0) -> dict:
    return {
        "image_hosts": {"ih": {"uploads_root": "/srv/cds", "domains": {"d0": "imagehost"}}},
        "dom0s": {"d0": {"storage": {"driver": "files", "directory": "/srv/v"},
                         "hypervisor": {"driver": "lab", "guest_disk_dirs": {"imagehost": "/x"}}, **dom0}},
    }


def test_config_defaults_and_errors():
    cfg = parse_config(minimal())
    assert cfg.dom0s["d0"].staging_prefix == "cdtmp_" and cfg.dom0s["d0"].final_prefix == "cd_"
    assert cfg.image_hosts["ih"].ssh.address == "ih" and cfg.image_hosts["ih"].ssh.port is None
    for broken, text in [
        (minimal(staging_prefix="cd_x"), "prefixes of each other"),
        (minimal(final_prefix="bad/name"), "must match"),
        ({"image_hosts": {}, "dom0s": {}}, "no [image_hosts"),
        ({**minimal(), "image_hosts": {"ih": {"uploads_root": "relative"}}}, "absolute"),
        ({**minimal(), "image_hosts": {"ih": {"domains": {"nope": "x"}}}}, "unknown dom0"),
    ]:
        with pytest.raises(ConfigError, match=text.replace("[", r"\[")):
            parse_config(broken)


@pytest.mark.parametrize("name", HOSTILE)
def test_volume_names_are_valid_and_deterministic(name):
    body = volume_body("owner", name)
    for prefix in ("cdtmp_", "cd_", "x" * 32):
        assert is_valid_lvm_name(prefix + body) and len(prefix + body) <= MAX_NAME
    assert volume_body("owner", name) == body


def test_volume_names_do_not_collide():
    names = ["a b.iso", "a_b.iso", "a?b.iso", "a*b.iso", "A B.iso"]
    bodies = {volume_body("o", n) for n in names}
    assert len(bodies) == len(names)
    assert volume_body("o", "x.iso") != volume_body("p", "x.iso")
    assert volume_body("a_b", "c.iso") != volume_body("a", "b_c.iso")
    assert is_valid_lvm_name("cd_" + volume_body("c", "_mlog.iso"))


@pytest.mark.parametrize("name", HOSTILE)
def test_naming_templates_stay_valid_for_any_label(name):
    template = "{owner}-{label}.{size}_{date}+{stem}"
    body = volume_body("owner", name, template, label=name, size=4_400_000_000, when=0)
    assert is_valid_lvm_name("cd_" + body) and len("x" * 32 + body) <= MAX_NAME
    assert body.startswith("owner-") and "4G_19700101" in body
    assert volume_body("owner", name, template, label=name, size=4_400_000_000, when=0) == body


def test_naming_template_fields_and_errors():
    assert volume_body("alice", "debian 12.iso", "{owner}_{label}_{size}", "DEBIAN 12.5 amd64", 650 * 2**20) \
        == "alice_DEBIAN_12.5_amd64_650M_" + volume_body("alice", "debian 12.iso")[-8:]
    # without a volume id the label is the file's stem; the default template is owner + stem
    assert volume_body("a", "x.iso", "{label}").startswith("x_")
    assert volume_body("a", "x.iso").startswith("a_x_")
    for bad, text in [("{owner}/{stem}", "only"), ("{nope}", "unknown field"), ("{size:>9}", "unknown field"),
                      ("fixed", "at least one field"), ("{owner", "naming template")]:
        with pytest.raises(ConfigError, match=text):
            parse_config({**minimal(), "naming": {"template": bad}})
    assert parse_config({**minimal(), "naming": {"template": "{owner}.{label}"}}).naming == "{owner}.{label}"


@pytest.mark.parametrize("arg", HOSTILE)
def test_rendered_commands_pass_every_argument_verbatim(arg, tmp_path):
    command = cmd("printf", "%s", arg)
    out = subprocess.run(["/bin/sh", "-c", command.render()], capture_output=True, cwd=tmp_path)
    assert out.stdout.decode() == arg
    via_script = script('printf %s "$1"', "t", arg)
    out = subprocess.run(["/bin/sh", "-c", via_script.render()], capture_output=True, cwd=tmp_path)
    assert out.stdout.decode() == arg
    assert list(tmp_path.iterdir()) == []  # no redirection or substitution happened


def test_unsendable_arguments_are_refused():
    for bad in ("nul\0byte", "latin1-\udce9.iso"):
        with pytest.raises(UnsafeArgument):
            cmd("ls", bad).render()


def test_backend_never_imports_textual():
    code = (
        "import importlib, pkgutil, sys, backend\n"
        "for m in pkgutil.walk_packages(backend.__path__, 'backend.'):\n"
        "    importlib.import_module(m.name)\n"
        "assert 'textual' not in sys.modules, sorted(k for k in sys.modules if k.startswith('textual'))\n"
        "print(len([m for m in sys.modules if m.startswith('backend')]))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) >= 15  # every backend module was imported

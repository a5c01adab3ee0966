"""The one-pass copy script on this machine's own sh and coreutils: byte-identical landing with O_DIRECT and
without (a host without GNU dd), any size against the segment size, and both digests equal to the upload's;
what a host has is parsed from the probe's output."""

from __future__ import annotations

import os
import subprocess

import pytest

from backend.hosttools import _PROBE, parse_tools
from backend.imagehost import copy_command

from ..conftest import sha256_file

MiB = 1 << 20


def run_copy(src, dst, dd: str, segment: int) -> dict[str, str]:
    r = subprocess.run(list(copy_command(str(src), str(dst), "sha256sum", dd, segment).argv),
                       capture_output=True, timeout=120)
    out = {}
    for line in r.stdout.decode().splitlines():
        word, _, rest = line.partition(" ")
        out[word] = rest
    out["progress"] = r.stderr.decode()
    return out


@pytest.mark.parametrize("dd", ["gnu", "other"])
@pytest.mark.parametrize("size", [1, 4096 + 7, MiB, 3 * MiB + 12345])
def test_one_pass_copy_lands_the_upload_and_proves_it(tmp_path, dd, size):
    src, dst = tmp_path / "upload.iso", tmp_path / "disk.img"
    src.write_bytes(os.urandom(size))
    with open(dst, "wb") as f:
        f.truncate(4 * MiB)  # a disk bigger than the upload, as a staging volume is
        f.seek(size)
        f.write(b"\xff" * 512)  # bytes past the upload's end must not count
    out = run_copy(src, dst, dd, segment=1)
    expected = sha256_file(src)
    assert (out["read"], out["write"], out["readback"]) == ("0", "0", "0"), out
    assert out["upload"].split()[0] == expected and out["landed"].split()[0] == expected
    assert sha256_file(dst, size) == expected
    assert out["before"] == out["after"] and f"verified {size}" in out["progress"]
    assert f"{size} bytes written" in out["progress"]


def test_a_swapped_upload_is_not_followed(tmp_path):
    src, dst = tmp_path / "upload.iso", tmp_path / "disk.img"
    (tmp_path / "secret").write_bytes(b"secret" * 1000)
    src.symlink_to(tmp_path / "secret")
    dst.write_bytes(bytes(MiB))
    out = run_copy(src, dst, "gnu", segment=1)
    assert out.get("write") != "0" and b"secret" not in dst.read_bytes()


def test_the_probe_reads_this_machine_and_parses():
    tools = parse_tools(subprocess.run(["sh", "-c", _PROBE], capture_output=True, text=True).stdout)
    assert tools.sha in ("openssl", "sha256sum") and tools.dd == "gnu"
    busybox = parse_tools("sha sha256sum\ndd busybox\nwget busybox-applet\n")
    assert busybox.downloader == "busybox" and busybox.schemes() == {"http", "https", "ftp"}
    curl = parse_tools("sha openssl\ndd gnu\ncurl dict file ftp http https sftp\n")
    assert curl.downloader == "curl" and curl.schemes() == {"ftp", "http", "https", "sftp"}  # never file

"""The records the backend hands to the TUI and the CLI (plain dataclasses, JSON-ready)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .isoinfo import IsoFacts


class UploadState(str, enum.Enum):
    """Where an upload stands (the ``state`` column and JSON field)."""

    WRITING = "writing"        # size or mtime still changing, or younger than the settle time
    PENDING = "pending"        # complete, waiting for a decision
    IMPORTING = "importing"    # a job is copying it (or a staging volume of it exists)
    AVAILABLE = "available"    # a final volume with its sha256 exists
    FAILED = "failed"          # the last import failed (see the job); can be approved again
    REJECTED = "rejected"      # an admin rejected it (the file is kept)
    REFUSED = "refused"        # symlink, device, fifo, socket, directory, >1 hard link, bad name


APPROVABLE = {UploadState.PENDING, UploadState.FAILED, UploadState.REJECTED}


@dataclass(slots=True)
class Upload:
    """One entry of an owner's upload folder on an image host.

    Attributes:
        host: image host name. owner: the owner (folder name). name: file name inside it.
        path: absolute path on the image host. kind: ``file``, ``symlink``, ``directory``, ``fifo``,
        ``socket``, ``block``, ``char``. size: bytes. mtime: epoch seconds. inode, nlink: from stat.
        iso: header facts (None until read, and for refused entries). state: see :class:`UploadState`.
        reason: why refused / rejected / failed, else "". job: id of its current or last job, else "".
    """

    host: str
    owner: str
    name: str
    path: str
    kind: str
    size: int
    mtime: float
    inode: int
    nlink: int
    iso: IsoFacts | None = None
    state: UploadState = UploadState.PENDING
    reason: str = ""
    job: str = ""

    @property
    def key(self) -> str:
        """``OWNER/FILE``: how the CLI and the TUI name an upload."""
        return f"{self.owner}/{self.name}"

    def to_json(self) -> dict:
        """The ``uploads --json`` item: ``iso`` (the ISO 9660 facts, None when not ISO 9660), ``content``
        (:attr:`~backend.isoinfo.IsoFacts.kind`: ``iso9660``, ``linux-kernel``, ``cpio``, ``gzip`` ...,
        ``boot-image`` or ``data``; None until the header is read) and ``kernel_version``."""
        return {
            "owner": self.owner, "name": self.name, "host": self.host, "path": self.path,
            "kind": self.kind, "size": self.size, "mtime": self.mtime, "state": self.state.value,
            "reason": self.reason, "job": self.job,
            "iso": self.iso.to_json() if self.iso else None,
            "content": self.iso.kind if self.iso else None,
            "kernel_version": self.iso.kernel_version if self.iso else None,
        }


@dataclass(slots=True)
class Volume:
    """A volume on a dom0's storage (a sparse file for ``files``, an LV for ``lvm``).

    Attributes:
        dom0: dom0 name. name: volume name. namespace: ``staging`` or ``final`` (``other`` for
        volumes isoadmin did not create). size: bytes allocated. path: device or file path on the
        dom0. meta: the metadata recorded with it (owner, upload, sha256, size, source_host,
        source_path, approver, time, job) — empty for foreign volumes.
    """

    dom0: str
    name: str
    namespace: str
    size: int
    path: str
    meta: dict = field(default_factory=dict)

    @property
    def owner(self) -> str:
        """The owner recorded with the volume ("" for foreign volumes)."""
        return str(self.meta.get("owner", ""))

    @property
    def upload(self) -> str:
        """The upload's original file name recorded with the volume."""
        return str(self.meta.get("upload", ""))

    @property
    def sha256(self) -> str:
        """The sha256 (hex) recorded when the volume was verified ("" while staging)."""
        return str(self.meta.get("sha256", ""))

    def to_json(self) -> dict:
        """The ``volumes --json`` item."""
        return {
            "dom0": self.dom0, "name": self.name, "namespace": self.namespace, "owner": self.owner,
            "upload": self.upload, "size": self.size, "sha256": self.sha256 or None, "path": self.path,
            "meta": self.meta,
        }


@dataclass
class StorageReport:
    """A dom0's storage as one listing saw it.

    Attributes:
        capacity: total bytes. free: bytes available for new volumes. unit: allocation unit in
        bytes (volumes are rounded up to it; the LVM extent size). volumes: what it holds.
    """

    capacity: int
    free: int
    unit: int
    volumes: list[Volume]


@dataclass
class HostStatus:
    """The last refresh of one host.

    Attributes:
        name: host name. role: ``image host`` or ``dom0``. up: reachable and answering.
        error: why not, else "". latency: seconds the refresh took. checked: epoch seconds.
        storage: the dom0's storage report (dom0s only).
    """

    name: str
    role: str
    up: bool = False
    error: str = ""
    latency: float = 0.0
    checked: float = 0.0
    storage: StorageReport | None = None

    def to_json(self) -> dict:
        """The ``hosts --json`` item (capacity/free in bytes for dom0s)."""
        data = {"name": self.name, "role": self.role, "up": self.up, "error": self.error,
                "latency": round(self.latency, 4), "checked": self.checked}
        if self.storage is not None:
            data["capacity"] = self.storage.capacity
            data["free"] = self.storage.free
        return data


@dataclass
class Owner:
    """An owner: a folder in an image host's uploads root.

    Attributes:
        name: the folder's name. host: the image host. group: the folder's group there.
        members: who may act for this owner ("has bits on" it): the owner itself, the members of the
            folder's group on the image host, and the site config's ``[owners]`` mapping.
    """

    name: str
    host: str
    group: str = ""
    members: set[str] = field(default_factory=set)

    def to_json(self) -> dict:
        """The ``owners --json`` item."""
        return {"name": self.name, "host": self.host, "group": self.group, "members": sorted(self.members)}

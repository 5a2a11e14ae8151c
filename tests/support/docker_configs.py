"""Docker ``HostConfig`` values for the side-file allow-list tests
(:mod:`cryostash.engines.docker_config`): :data:`INSPECTED`, what ``docker inspect``
reports for a default container, and :data:`ETC_VOLUME`, a volume that is really a bind
mount of the host's ``/etc``."""

from __future__ import annotations

from typing import Any

from cryostash.engines.docker_config import BASE_MASKED, BASE_READONLY

#: A ``docker inspect`` HostConfig of a default ``docker run -d -p 8080:80 IMAGE``.
INSPECTED: dict[str, Any] = {
    "Binds": None, "ContainerIDFile": "", "LogConfig": {"Type": "json-file", "Config": {}},
    "NetworkMode": "bridge", "PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]},
    "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0}, "AutoRemove": False,
    "VolumeDriver": "", "VolumesFrom": None, "ConsoleSize": [0, 0], "CapAdd": None,
    "CapDrop": None, "CgroupnsMode": "private", "Dns": [], "DnsOptions": [], "DnsSearch": [],
    "ExtraHosts": None, "GroupAdd": None, "IpcMode": "private", "Cgroup": "", "Links": None,
    "OomScoreAdj": 0, "PidMode": "", "Privileged": False, "PublishAllPorts": False,
    "ReadonlyRootfs": False, "SecurityOpt": None, "UTSMode": "", "UsernsMode": "",
    "ShmSize": 67108864, "Runtime": "runc", "Isolation": "", "CpuShares": 0, "Memory": 0,
    "NanoCpus": 0, "CgroupParent": "", "BlkioWeight": 0, "BlkioWeightDevice": [],
    "BlkioDeviceReadBps": [], "BlkioDeviceWriteBps": [], "BlkioDeviceReadIOps": [],
    "BlkioDeviceWriteIOps": [], "CpuPeriod": 0, "CpuQuota": 0, "CpuRealtimePeriod": 0,
    "CpuRealtimeRuntime": 0, "CpusetCpus": "", "CpusetMems": "", "Devices": [],
    "DeviceCgroupRules": None, "DeviceRequests": None, "MemoryReservation": 0,
    "MemorySwap": 0, "MemorySwappiness": None, "OomKillDisable": False, "PidsLimit": None,
    "Ulimits": None, "CpuCount": 0, "CpuPercent": 0, "IOMaximumIOps": 0,
    "IOMaximumBandwidth": 0,
    "MaskedPaths": sorted(BASE_MASKED | {"/sys/devices/virtual/powercap"}),
    "ReadonlyPaths": sorted(BASE_READONLY),
}
#: A local-driver volume that is really a bind mount of the host's /etc.
ETC_VOLUME = {
    "Type": "volume", "Source": "etc", "Target": "/mnt",
    "VolumeOptions": {"DriverConfig": {"Name": "local",
                                       "Options": {"type": "none", "o": "bind",
                                                   "device": "/etc"}}},
}

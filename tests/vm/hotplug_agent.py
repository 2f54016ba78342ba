#!/usr/bin/env python3
"""Host half of the guest's hot-plug tests: unplugs and plugs devices
through QEMU's monitor (QMP) when the guest asks.

    hotplug_agent.py QMP_SOCKET DIR IVSHMEM_FILE

The guest writes DIR/request.N holding "del ID" or "add ID"; the agent
carries it out and writes DIR/done.N holding "ok" or "error: ..." once
QEMU has finished (for a removal: once it reports DEVICE_DELETED). The IDs
and how to add each device back are those tests/vm/run.sh gives them.
Runs until QEMU closes the socket.

ivshmem-plain is plugged back with a new memory backend each time, over the
same file: QEMU (seen with 10.0) aborts in qemu_ram_set_idstr() when an
ivshmem device is added again on the backend its predecessor used.
"""
import json
import os
import select
import socket
import sys
import time

DEVICES = {
    "edu0": {"driver": "edu", "bus": "rp_edu", "id": "edu0"},
    "ivshmem0": {"driver": "ivshmem-plain", "bus": "rp_ivshmem", "id": "ivshmem0"},
}
# The memory backend the ivshmem device uses now (run.sh creates the first).
backend = {"ivshmem0": "ivshmem_mem"}


class Qmp:
    def __init__(self, path):
        deadline = time.time() + 600
        while True:
            self.sock = socket.socket(socket.AF_UNIX)
            try:
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        self.buffer = b""
        self.events = []
        self.read(None)  # the greeting
        self.command("qmp_capabilities")

    def read(self, timeout):
        """The next message, or None if none came within `timeout` seconds."""
        while b"\n" not in self.buffer:
            ready, _, _ = select.select([self.sock], [], [], timeout)
            if not ready:
                return None
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("QEMU closed the monitor")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def command(self, name, **arguments):
        self.sock.sendall((json.dumps({"execute": name, "arguments": arguments}) + "\n").encode())
        while True:
            message = self.read(None)
            if "event" in message:
                self.events.append(message)
            elif "error" in message:
                raise RuntimeError(message["error"].get("desc", str(message["error"])))
            elif "return" in message:
                return message["return"]

    def wait_event(self, name, device, timeout):
        deadline = time.time() + timeout
        while True:
            for e in self.events:
                if e["event"] == name and e.get("data", {}).get("device") == device:
                    self.events.remove(e)
                    return
            left = deadline - time.time()
            message = self.read(max(left, 0)) if left > 0 else None
            if message is None:
                raise TimeoutError(f"no {name} for {device} in {timeout} s")
            self.events.append(message)


def add(qmp, device, pattern, number):
    arguments = dict(DEVICES[device])
    if device in backend:
        memdev = f"ivshmem_mem_{number}"
        qmp.command("object-add", **{"qom-type": "memory-backend-file", "id": memdev,
                                     "mem-path": pattern, "size": 1 << 30, "share": False})
        backend[device] = memdev
        arguments["memdev"] = memdev
    qmp.command("device_add", **arguments)


def main(path, directory, pattern):
    qmp = Qmp(path)
    done = set()
    while True:
        for name in sorted(os.listdir(directory)):
            if not name.startswith("request.") or name in done:
                continue
            done.add(name)
            number = name.split(".", 1)[1]
            with open(os.path.join(directory, name)) as f:
                verb, device = f.read().split()
            try:
                if verb == "del":
                    qmp.command("device_del", id=device)
                    qmp.wait_event("DEVICE_DELETED", device, 60)
                    if device in backend:
                        qmp.command("object-del", id=backend[device])
                elif verb == "add":
                    add(qmp, device, pattern, number)
                else:
                    raise ValueError(f"unknown request {verb}")
                result = "ok"
            except EOFError:
                return 0
            except Exception as e:  # reported to the guest, which fails the case
                result = f"error: {e}"
            tmp = os.path.join(directory, f".done.{number}")
            with open(tmp, "w") as f:
                f.write(result + "\n")
            os.rename(tmp, os.path.join(directory, f"done.{number}"))
        # Notice QEMU going away even when the guest asks for nothing.
        try:
            message = qmp.read(0.1)
        except (EOFError, OSError):
            return 0
        if message is not None:
            qmp.events.append(message)


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3]))
    except (EOFError, ConnectionError):
        sys.exit(0)

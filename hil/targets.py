"""What the integration tests in ``tests/hil/test_targets.py`` read: simulators, or a rig of real devices.

Without a file every target is a simulator from ``hil/`` on a free loopback port (``hil/simulated.py``).
With ``AVILA_HIL_TARGETS=my-rig.yaml`` the same tests read the devices that file names::

    deadline: 10s                  # how long every point may take to read Good (default 10s)
    modbus_tcp:
      - id: plc1
        address: 192.168.10.20:502
        unit_id: 1
        timeout: 500ms
        registers:
          - {id: pump1/flow, table: holding, address: 0, type: float32, expect: [0, 300]}
        scratch: {address: 90, type: uint16}   # optional: a holding register the test may overwrite
    modbus_rtu:
      - {id: rtu1, port: /dev/ttyUSB0, baudrate: 19200, parity: E, stopbits: 1, unit_id: 1, registers: [...]}
    opcua:
      - id: srv1
        endpoint: opc.tcp://192.168.10.30:4840/
        security_mode: sign_and_encrypt           # none (default), sign, sign_and_encrypt
        security_policy: basic256sha256
        certificate_dir: /var/lib/avila-edge/pki
        trusted_server_certificates: [/etc/avila-edge/trusted/srv1.der]
        username: tester                          # optional, with the password in password_file
        password_file: /etc/avila-edge/srv1.password
        nodes:
          - {id: pump1/flow, node: "ns=2;s=Pump1.Flow", type: float64, expect: [0, 300]}
    mqtt:
      - id: broker1
        address: 192.168.10.40:8883
        tls: {ca_file: ca.pem, cert_file: gateway.pem, key_file: gateway.key}
        values:
          - {id: pump1/flow, topic: plant/pump1/flow, value_path: $.v, type: float64, expect: [0, 300]}

Durations are seconds or text such as ``500ms``/``2s``. A ``value_path`` absent means a plain-number
payload. Errors name the file, the line and the key: ``my-rig.yaml:12: modbus_tcp[0].address: ...``.

Imports nothing of the gateway (``hil/`` stands in for the plant); the tests turn a target into a
driver's configuration.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import yaml

ENV: Final = "AVILA_HIL_TARGETS"
"""The environment variable that names a targets file."""

Table = Literal["holding", "input", "coil", "discrete"]
Order = Literal["big", "little"]
Parity = Literal["N", "E", "O"]
SecurityMode = Literal["none", "sign", "sign_and_encrypt"]
TYPES: Final = ("bool", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "string")
WRITABLE_TYPES: Final = ("int16", "uint16")
POLICIES: Final = ("basic256sha256", "aes128_sha256_rsaoaep", "aes256_sha256_rsapss")


class TargetsError(ValueError):
    """The targets file is invalid: ``FILE:LINE: key: message``."""


@dataclass(frozen=True, slots=True)
class Expect:
    """The range a good value must lie in (both ends included)."""

    low: float
    high: float

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise ValueError(f"the range [{self.low}, {self.high}] is empty")

    def holds(self, value: object) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool) and self.low <= value <= self.high


@dataclass(frozen=True, slots=True)
class Register:
    """One Modbus point to check: table, 0-based address, type (``length`` registers for a string)."""

    id: str
    table: Table
    address: int
    type: str
    length: int = 0
    byte_order: Order = "big"
    word_order: Order = "big"
    scale: float = 1.0
    expect: Expect | None = None


@dataclass(frozen=True, slots=True)
class Scratch:
    """A holding register the tests may overwrite with a test value and read back."""

    address: int
    type: str = "uint16"


@dataclass(frozen=True, slots=True)
class ModbusTcpTarget:
    id: str
    host: str
    port: int
    registers: tuple[Register, ...]
    unit_id: int = 1
    timeout: float = 1.0
    poll_interval: float = 0.2
    scratch: Scratch | None = None


@dataclass(frozen=True, slots=True)
class ModbusRtuTarget:
    id: str
    port: str
    registers: tuple[Register, ...]
    baudrate: int = 19200
    parity: Parity = "E"
    stopbits: int = 1
    unit_id: int = 1
    timeout: float = 1.0
    poll_interval: float = 0.2
    scratch: Scratch | None = None


@dataclass(frozen=True, slots=True)
class Node:
    """One OPC UA variable to check, by NodeId string (``ns=2;s=Pump1.Flow``, ``nsu=urn:...;i=7``)."""

    id: str
    node: str
    type: str = "float64"
    expect: Expect | None = None


@dataclass(frozen=True, slots=True)
class OpcUaTarget:
    id: str
    endpoint: str
    nodes: tuple[Node, ...]
    security_mode: SecurityMode = "none"
    security_policy: str = "basic256sha256"
    certificate_dir: str | None = None
    trusted_server_certificates: tuple[str, ...] = ()
    username: str | None = None
    password_file: str | None = None
    timeout: float = 2.0
    poll_interval: float = 0.2


@dataclass(frozen=True, slots=True)
class Tls:
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify_hostname: bool = True


@dataclass(frozen=True, slots=True)
class Value:
    """One MQTT value to check: its topic and, for JSON payloads, where the value is (``$.v``)."""

    id: str
    topic: str
    value_path: str | None = None
    type: str = "float64"
    expect: Expect | None = None


@dataclass(frozen=True, slots=True)
class MqttTarget:
    id: str
    host: str
    port: int
    values: tuple[Value, ...]
    tls: Tls | None = None
    username: str | None = None
    password_file: str | None = None
    timeout: float = 2.0


Target = ModbusTcpTarget | ModbusRtuTarget | OpcUaTarget | MqttTarget
PROTOCOLS: Final = ("modbus_tcp", "modbus_rtu", "opcua", "mqtt")


@dataclass(frozen=True, slots=True)
class Targets:
    """Every target of a file (``file``), or of the simulators (``file is None``)."""

    file: Path | None
    deadline: float = 10.0
    modbus_tcp: tuple[ModbusTcpTarget, ...] = ()
    modbus_rtu: tuple[ModbusRtuTarget, ...] = ()
    opcua: tuple[OpcUaTarget, ...] = ()
    mqtt: tuple[MqttTarget, ...] = ()

    def of(self, protocol: str) -> tuple[Target, ...]:
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}")
        found: tuple[Target, ...] = getattr(self, protocol)
        return found


def from_environment(environ: Mapping[str, str] = os.environ) -> Path | None:
    """The targets file named by ``AVILA_HIL_TARGETS``, or None (the simulators)."""
    value = environ.get(ENV, "").strip()
    return Path(value) if value else None


# -- reading the file -----------------------------------------------------------------------------


def load(path: Path) -> Targets:
    """Read the targets file at ``path``; every error names the file, the line and the key."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TargetsError(f"{path}: cannot be read: {exc.strerror or exc}") from exc
    return parse(text, str(path), file=path)


def parse(text: str, filename: str, *, file: Path | None = None) -> Targets:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise TargetsError(f"{filename}{line}: not valid YAML: {exc.problem or exc.context}") from exc
    except yaml.YAMLError as exc:
        raise TargetsError(f"{filename}: not valid YAML: {exc}") from exc
    r = _Reader(filename)
    if root is None:
        raise TargetsError(f"{filename}: empty; name at least one target under {', '.join(PROTOCOLS)}")
    top = r.mapping(root, "", {"deadline", *PROTOCOLS})
    targets = Targets(
        file=file or Path(filename),
        deadline=r.seconds(top, "", "deadline", 10.0),
        modbus_tcp=tuple(r.each(top, "", "modbus_tcp", r.modbus_tcp)),
        modbus_rtu=tuple(r.each(top, "", "modbus_rtu", r.modbus_rtu)),
        opcua=tuple(r.each(top, "", "opcua", r.opcua)),
        mqtt=tuple(r.each(top, "", "mqtt", r.mqtt)),
    )
    if not any(targets.of(p) for p in PROTOCOLS):
        raise TargetsError(
            f"{filename}:{root.start_mark.line + 1}: name at least one target under {', '.join(PROTOCOLS)}"
        )
    ids = [t.id for p in PROTOCOLS for t in targets.of(p)]
    if duplicate := next((i for i in ids if ids.count(i) > 1), None):
        raise TargetsError(f"{filename}: target id {duplicate!r} is given twice")
    return targets


Fields = dict[str, yaml.Node]
_ADDRESS = re.compile(r"([\w.\-]+|\[[0-9a-fA-F:]+\]):(\d{1,5})")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s)")


class _Reader:
    """Reads PyYAML nodes into the dataclasses above; every problem is raised at its node's line."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.keys: dict[int, yaml.Node] = {}  # id(value node) -> its key node, for the line of a key
        self.constructor = yaml.constructor.SafeConstructor()

    def fail(self, node: yaml.Node, path: str, message: str) -> TargetsError:
        where = f" {path}:" if path else ""
        return TargetsError(f"{self.filename}:{node.start_mark.line + 1}:{where} {message}")

    def mapping(self, node: yaml.Node, path: str, allowed: set[str]) -> Fields:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, path, "expected a mapping of keys to values")
        out: Fields = {}
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else ""
            here = _join(path, name)
            if not isinstance(key, yaml.ScalarNode) or key.tag != "tag:yaml.org,2002:str":
                raise self.fail(key, path, "a key must be plain text")
            if name in out:
                raise self.fail(
                    key, here, f"duplicate key (first given on line {self.keys[id(out[name])].start_mark.line + 1})"
                )
            if name not in allowed:
                raise self.fail(key, here, f"unknown key; use one of {', '.join(sorted(allowed))}")
            out[name] = value
            self.keys[id(value)] = key
        return out

    def each(self, fields: Fields, path: str, key: str, read: Callable[[yaml.Node, str], Any]) -> list[Any]:
        """``read(item, its path)`` of every item of the list at ``key`` (none when absent)."""
        node = fields.get(key)
        here = _join(path, key)
        if node is None or (isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"):
            return []
        if not isinstance(node, yaml.SequenceNode):
            raise self.fail(node, here, "expected a list")
        return [read(item, f"{here}[{i}]") for i, item in enumerate(node.value)]

    def scalar(self, node: yaml.Node, path: str) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            raise self.fail(node, path, "expected a single value, not a list or mapping")
        if node.tag == "tag:yaml.org,2002:timestamp":
            return str(node.value)  # a date stays text
        return self.constructor.construct_object(node)

    def text_item(self, node: yaml.Node, path: str) -> str:
        value = self.scalar(node, path)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(node, path, "expected text")
        return value

    def need(self, fields: Fields, owner: yaml.Node, path: str, key: str) -> yaml.Node:
        if key not in fields:
            raise self.fail(owner, _join(path, key), "missing")
        return fields[key]

    def text(self, fields: Fields, path: str, key: str, default: str | None = None) -> str:
        node = fields.get(key)
        if node is None:
            if default is None:
                raise TargetsError(f"{self.filename}: {_join(path, key)}: missing")
            return default
        value = self.scalar(node, _join(path, key))
        if not isinstance(value, str) or not value.strip():
            raise self.fail(node, _join(path, key), "expected text")
        return value

    def optional_text(self, fields: Fields, path: str, key: str) -> str | None:
        return self.text(fields, path, key) if key in fields else None

    def choice(self, fields: Fields, path: str, key: str, allowed: tuple[str, ...], default: str) -> str:
        value = self.text(fields, path, key, default)
        if value not in allowed:
            raise self.fail(fields[key], _join(path, key), f"'{value}' is not one of {', '.join(allowed)}")
        return value

    def integer(self, fields: Fields, path: str, key: str, default: int, low: int, high: int) -> int:
        if key not in fields:
            return default
        value = self.scalar(fields[key], _join(path, key))
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise self.fail(fields[key], _join(path, key), f"expected a whole number from {low} to {high}")
        return value

    def number(self, fields: Fields, path: str, key: str, default: float) -> float:
        if key not in fields:
            return default
        value = self.scalar(fields[key], _join(path, key))
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise self.fail(fields[key], _join(path, key), "expected a number")
        return float(value)

    def flag(self, fields: Fields, path: str, key: str, default: bool) -> bool:
        if key not in fields:
            return default
        value = self.scalar(fields[key], _join(path, key))
        if not isinstance(value, bool):
            raise self.fail(fields[key], _join(path, key), "expected true or false")
        return value

    def seconds(self, fields: Fields, path: str, key: str, default: float) -> float:
        if key not in fields:
            return default
        value = self.scalar(fields[key], _join(path, key))
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return float(value)
        match = _DURATION.fullmatch(str(value))
        if match is None or float(match.group(1)) <= 0:
            raise self.fail(fields[key], _join(path, key), f"'{value}' is not a duration (e.g. 500ms, 2s)")
        return float(match.group(1)) / (1000 if match.group(2) == "ms" else 1)

    def address(self, fields: Fields, owner: yaml.Node, path: str) -> tuple[str, int]:
        node = self.need(fields, owner, path, "address")
        value = str(self.scalar(node, _join(path, "address")))
        match = _ADDRESS.fullmatch(value)
        if match is None or not 1 <= int(match.group(2)) <= 65535:
            raise self.fail(node, _join(path, "address"), f"'{value}' is not HOST:PORT (port 1 to 65535)")
        return match.group(1).strip("[]"), int(match.group(2))

    def expect(self, fields: Fields, path: str) -> Expect | None:
        node = fields.get("expect")
        if node is None:
            return None
        here = _join(path, "expect")
        if not isinstance(node, yaml.SequenceNode) or len(node.value) != 2:
            raise self.fail(node, here, "expected [low, high]")
        low, high = (self.scalar(n, here) for n in node.value)
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high)):
            raise self.fail(node, here, "expected two numbers [low, high]")
        if low > high:
            raise self.fail(node, here, f"the range [{low}, {high}] is empty")
        return Expect(float(low), float(high))

    def point_type(self, fields: Fields, owner: yaml.Node, path: str, default: str | None = None) -> str:
        if default is None:
            self.need(fields, owner, path, "type")
        return self.choice(fields, path, "type", TYPES, default or "")

    def common(self, fields: Fields, owner: yaml.Node, path: str) -> str:
        self.need(fields, owner, path, "id")
        return self.text(fields, path, "id")

    def register(self, node: yaml.Node, path: str) -> Register:
        keys = {"id", "table", "address", "type", "length", "byte_order", "word_order", "scale", "expect"}
        f = self.mapping(node, path, keys)
        kind = self.point_type(f, node, path)
        self.need(f, node, path, "address")
        length = self.integer(f, path, "length", 0, 0, 125)
        if kind == "string" and not length:
            raise self.fail(node, _join(path, "length"), "a string needs its length in registers")
        table = self.choice(f, path, "table", ("holding", "input", "coil", "discrete"), "holding")
        if table in ("coil", "discrete") and kind != "bool":
            raise self.fail(f["type"], _join(path, "type"), f"a {table} holds a bool, not {kind}")
        return Register(
            id=self.common(f, node, path),
            table=table,  # type: ignore[arg-type] # one of the choices
            address=self.integer(f, path, "address", 0, 0, 65535),
            type=kind,
            length=length,
            byte_order=self.choice(f, path, "byte_order", ("big", "little"), "big"),  # type: ignore[arg-type]
            word_order=self.choice(f, path, "word_order", ("big", "little"), "big"),  # type: ignore[arg-type]
            scale=self.number(f, path, "scale", 1.0),
            expect=self.expect(f, path),
        )

    def registers(self, f: Fields, owner: yaml.Node, path: str) -> tuple[Register, ...]:
        self.need(f, owner, path, "registers")
        found = tuple(self.each(f, path, "registers", self.register))
        if not found:
            raise self.fail(f["registers"], _join(path, "registers"), "name at least one register")
        return found

    def scratch(self, f: Fields, path: str) -> Scratch | None:
        node = f.get("scratch")
        if node is None:
            return None
        here = _join(path, "scratch")
        s = self.mapping(node, here, {"address", "type"})
        self.need(s, node, here, "address")
        return Scratch(
            self.integer(s, here, "address", 0, 0, 65535), self.choice(s, here, "type", WRITABLE_TYPES, "uint16")
        )

    def modbus_tcp(self, node: yaml.Node, path: str) -> ModbusTcpTarget:
        keys = {"id", "address", "unit_id", "timeout", "poll_interval", "registers", "scratch"}
        f = self.mapping(node, path, keys)
        host, port = self.address(f, node, path)
        return ModbusTcpTarget(
            id=self.common(f, node, path),
            host=host,
            port=port,
            registers=self.registers(f, node, path),
            unit_id=self.integer(f, path, "unit_id", 1, 0, 255),
            timeout=self.seconds(f, path, "timeout", 1.0),
            poll_interval=self.seconds(f, path, "poll_interval", 0.2),
            scratch=self.scratch(f, path),
        )

    def modbus_rtu(self, node: yaml.Node, path: str) -> ModbusRtuTarget:
        keys = {
            "id",
            "port",
            "baudrate",
            "parity",
            "stopbits",
            "unit_id",
            "timeout",
            "poll_interval",
            "registers",
            "scratch",
        }
        f = self.mapping(node, path, keys)
        self.need(f, node, path, "port")
        return ModbusRtuTarget(
            id=self.common(f, node, path),
            port=self.text(f, path, "port"),
            registers=self.registers(f, node, path),
            baudrate=self.integer(f, path, "baudrate", 19200, 1200, 921600),
            parity=self.choice(f, path, "parity", ("N", "E", "O"), "E"),  # type: ignore[arg-type]
            stopbits=self.integer(f, path, "stopbits", 1, 1, 2),
            unit_id=self.integer(f, path, "unit_id", 1, 1, 247),
            timeout=self.seconds(f, path, "timeout", 1.0),
            poll_interval=self.seconds(f, path, "poll_interval", 0.2),
            scratch=self.scratch(f, path),
        )

    def node(self, node: yaml.Node, path: str) -> Node:
        f = self.mapping(node, path, {"id", "node", "type", "expect"})
        self.need(f, node, path, "node")
        return Node(self.common(f, node, path), self.text(f, path, "node"), self.point_type(f, node, path, "float64"),
                    self.expect(f, path))  # fmt: skip

    def opcua(self, node: yaml.Node, path: str) -> OpcUaTarget:
        keys = {"id", "endpoint", "security_mode", "security_policy", "certificate_dir", "trusted_server_certificates",
                "username", "password_file", "timeout", "poll_interval", "nodes"}  # fmt: skip
        f = self.mapping(node, path, keys)
        self.need(f, node, path, "endpoint")
        endpoint = self.text(f, path, "endpoint")
        if not re.fullmatch(r"opc\.tcp://[^/:]+(:\d{1,5})?(/.*)?", endpoint):
            raise self.fail(f["endpoint"], _join(path, "endpoint"), "must look like opc.tcp://host:4840/path")
        mode = self.choice(f, path, "security_mode", ("none", "sign", "sign_and_encrypt"), "none")
        trusted = tuple(self.each(f, path, "trusted_server_certificates", self.text_item))
        if mode != "none":
            for key in ("certificate_dir", "trusted_server_certificates"):
                if key not in f:
                    raise self.fail(node, _join(path, key), f"security_mode {mode} needs it")
        if "password_file" in f and "username" not in f:
            raise self.fail(f["password_file"], _join(path, "username"), "a password_file needs a username")
        self.need(f, node, path, "nodes")
        nodes = tuple(self.each(f, path, "nodes", self.node))
        if not nodes:
            raise self.fail(f["nodes"], _join(path, "nodes"), "name at least one node")
        return OpcUaTarget(
            id=self.common(f, node, path),
            endpoint=endpoint,
            nodes=nodes,
            security_mode=mode,  # type: ignore[arg-type] # one of the choices
            security_policy=self.choice(f, path, "security_policy", POLICIES, "basic256sha256"),
            certificate_dir=self.optional_text(f, path, "certificate_dir"),
            trusted_server_certificates=trusted,
            username=self.optional_text(f, path, "username"),
            password_file=self.optional_text(f, path, "password_file"),
            timeout=self.seconds(f, path, "timeout", 2.0),
            poll_interval=self.seconds(f, path, "poll_interval", 0.2),
        )

    def value(self, node: yaml.Node, path: str) -> Value:
        f = self.mapping(node, path, {"id", "topic", "value_path", "type", "expect"})
        self.need(f, node, path, "topic")
        return Value(self.common(f, node, path), self.text(f, path, "topic"), self.optional_text(f, path, "value_path"),
                     self.point_type(f, node, path, "float64"), self.expect(f, path))  # fmt: skip

    def mqtt(self, node: yaml.Node, path: str) -> MqttTarget:
        f = self.mapping(node, path, {"id", "address", "tls", "username", "password_file", "timeout", "values"})
        host, port = self.address(f, node, path)
        tls: Tls | None = None
        if "tls" in f:
            here = _join(path, "tls")
            t = self.mapping(f["tls"], here, {"ca_file", "cert_file", "key_file", "verify_hostname"})
            tls = Tls(self.optional_text(t, here, "ca_file"), self.optional_text(t, here, "cert_file"),
                      self.optional_text(t, here, "key_file"), self.flag(t, here, "verify_hostname", True))  # fmt: skip
            if (tls.cert_file is None) != (tls.key_file is None):
                raise self.fail(f["tls"], here, "cert_file and key_file go together (mutual TLS)")
        if "password_file" in f and "username" not in f:
            raise self.fail(f["password_file"], _join(path, "username"), "a password_file needs a username")
        self.need(f, node, path, "values")
        values = tuple(self.each(f, path, "values", self.value))
        if not values:
            raise self.fail(f["values"], _join(path, "values"), "name at least one value")
        return MqttTarget(
            id=self.common(f, node, path),
            host=host,
            port=port,
            values=values,
            tls=tls,
            username=self.optional_text(f, path, "username"),
            password_file=self.optional_text(f, path, "password_file"),
            timeout=self.seconds(f, path, "timeout", 2.0),
        )


def _join(path: str, key: str) -> str:
    if not key:
        return path
    if key.startswith("["):
        return f"{path}{key}"
    return f"{path}.{key}" if path else key

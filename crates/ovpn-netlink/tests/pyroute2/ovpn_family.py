"""Test-side pyroute2 description of the messages `ovpn-netlink` builds.

Written from `spec/ovpn.yaml` and kernel-behaviour §1.1, §7 and §11, not
from our Rust sources, so that it is an independent second reading of the
wire format:

- the `ovpn` generic-netlink family (`OvpnMsg`), with the real wire types
  of every attribute: host-order u32 and s32, big-endian u16/u32 for ports
  and IPv4 addresses, 16-byte binaries for IPv6 addresses, binaries for
  key material, the variable-width `uint` (4 or 8 bytes, which pyroute2
  does not have), nests flagged with NLA_F_NESTED; ports flagged with
  NLA_F_NET_BYTEORDER in the messages the kernel sends (`nla_put_net16`
  in PEER_GET replies and PEER_FLOAT_NTF, seen on Linux 6.16 by the parity
  suite) and not in requests (libnl clients do not set it; the kernel
  accepts both);
- the netlink error/ACK and DONE messages with extended-ACK TLVs
  (`ErrorMsg`, `DoneMsg`): pyroute2's own `nlmsgerr` decodes the TLVs
  right after the error code, i.e. it reads the echoed request header as
  if it were attributes, so it cannot read a kernel extended ACK;
- the rtnetlink link message with kind "ovpn" (`OvpnLinkMsg`): pyroute2
  knows `ifinfmsg` but not the kind, so IFLA_INFO_DATA is described here;
- nlctrl is pyroute2's own `ctrlmsg`, unchanged.

Schemas are tables of (number, name, wire type); `diff.py` converts
between the logical JSON values of the test and pyroute2 values with the
same tables.
"""

import struct

from pyroute2.netlink import (
    NLA_F_NESTED,
    NLA_F_NET_BYTEORDER,
    ctrlmsg,
    genlmsg,
    nla,
    nla_string,
    nlmsg,
)
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

# ---------------------------------------------------------------------------
# Numbers from spec/ovpn.yaml (attributes are numbered from 1 in list order)
# and kernel-behaviour §7.1 / §11.

FAMILY_VERSION = 1

COMMANDS = {
    'peer-new': 1,
    'peer-set': 2,
    'peer-get': 3,
    'peer-del': 4,
    'peer-del-ntf': 5,
    'key-new': 6,
    'key-get': 7,
    'key-swap': 8,
    'key-swap-ntf': 9,
    'key-del': 10,
    'peer-float-ntf': 11,  # later kernels, §11
}

ENUMS = {
    'cipher-alg': ['none', 'aes-gcm', 'chacha20-poly1305'],
    'del-peer-reason': [
        'teardown',
        'userspace',
        'expired',
        'transport-error',
        'transport-disconnect',
    ],
    'key-slot': ['primary', 'secondary'],
}

# Wire types used in the schemas:
#   u8, u16, u32, s32, u64: host order (little-endian here)
#   be16: big-endian u16 (ports; NLA_F_NET_BYTEORDER in kernel messages,
#         added by diff.py for cases whose sender is "kernel")
#   ipv4: big-endian u32 shown as an address (display-hint ipv4)
#   ipv6: 16-byte binary shown as an address
#   binary: bytes, shown as hex
#   string: NUL-terminated string
#   uint: NLA_UINT, 4 bytes if the value fits in 32 bits, else 8
#   key-id: u32, but u16 in KEY_SWAP_NTF (kernel-behaviour §7.6)
#   enum:<name>: u32 holding an index of ENUMS[name]
#   nest:<set>: NLA_F_NESTED nest of another schema
SCHEMAS = {
    'ovpn': [
        (1, 'ifindex', 'u32'),
        (2, 'peer', 'nest:peer'),
        (3, 'keyconf', 'nest:keyconf'),
    ],
    'peer': [
        (1, 'id', 'u32'),
        (2, 'remote-ipv4', 'ipv4'),
        (3, 'remote-ipv6', 'ipv6'),
        (4, 'remote-ipv6-scope-id', 'u32'),
        (5, 'remote-port', 'be16'),
        (6, 'socket', 'u32'),
        (7, 'socket-netnsid', 's32'),
        (8, 'vpn-ipv4', 'ipv4'),
        (9, 'vpn-ipv6', 'ipv6'),
        (10, 'local-ipv4', 'ipv4'),
        (11, 'local-ipv6', 'ipv6'),
        (12, 'local-port', 'be16'),
        (13, 'keepalive-interval', 'u32'),
        (14, 'keepalive-timeout', 'u32'),
        (15, 'del-reason', 'enum:del-peer-reason'),
        (16, 'vpn-rx-bytes', 'uint'),
        (17, 'vpn-tx-bytes', 'uint'),
        (18, 'vpn-rx-packets', 'uint'),
        (19, 'vpn-tx-packets', 'uint'),
        (20, 'link-rx-bytes', 'uint'),
        (21, 'link-tx-bytes', 'uint'),
        (22, 'link-rx-packets', 'uint'),
        (23, 'link-tx-packets', 'uint'),
        (24, 'tx-id', 'u32'),  # later kernels, §11
    ],
    'keyconf': [
        (1, 'peer-id', 'u32'),
        (2, 'slot', 'enum:key-slot'),
        (3, 'key-id', 'key-id'),
        (4, 'cipher-alg', 'enum:cipher-alg'),
        (5, 'encrypt-dir', 'nest:keydir'),
        (6, 'decrypt-dir', 'nest:keydir'),
    ],
    'keydir': [
        (1, 'cipher-key', 'binary'),
        (2, 'nonce-tail', 'binary'),
    ],
    # NLMSGERR_ATTR_* (include/uapi/linux/netlink.h)
    'ext-ack': [
        (1, 'msg', 'string'),
        (2, 'offs', 'u32'),
        (3, 'cookie', 'binary'),
        (4, 'policy', 'nest:policy'),
        (5, 'miss-type', 'u32'),
        (6, 'miss-nest', 'u32'),
    ],
    # NL_POLICY_TYPE_ATTR_* (include/uapi/linux/netlink.h)
    'policy': [
        (1, 'type', 'u32'),
        (2, 'min-value-s', 's64'),
        (3, 'max-value-s', 's64'),
        (4, 'min-value-u', 'u64'),
        (5, 'max-value-u', 'u64'),
        (6, 'min-length', 'u32'),
        (7, 'max-length', 'u32'),
        (8, 'policy-idx', 'u32'),
        (9, 'policy-maxtype', 'u32'),
        (10, 'bitfield32-mask', 'u32'),
        (11, 'pad', 'u64'),
        (12, 'mask', 'u64'),
    ],
    # IFLA_OVPN_* inside IFLA_INFO_DATA (include/uapi/linux/if_link.h)
    'link-ovpn': [
        (1, 'mode', 'u8'),
    ],
}

# The order in which the kernel writes attributes (kernel-behaviour §7.6,
# §7.7, §11, and netlink_ack_tlv_fill / netlink_policy_dump_write_attr for
# the extended ACK). pyroute2 writes attributes in the order it is given;
# the kernel ignores order on input, so requests use this order too, which
# is also the order our encoder picked.
KERNEL_ORDER = {
    'ovpn': ['ifindex', 'peer', 'keyconf'],
    'peer': [
        'del-reason',
        'socket-netnsid',
        'id',
        'tx-id',
        'socket',
        'vpn-ipv4',
        'vpn-ipv6',
        'keepalive-interval',
        'keepalive-timeout',
        'remote-ipv4',
        'remote-ipv6',
        'remote-ipv6-scope-id',
        'remote-port',
        'local-ipv4',
        'local-ipv6',
        'local-port',
        'vpn-rx-bytes',
        'vpn-rx-packets',
        'vpn-tx-bytes',
        'vpn-tx-packets',
        'link-rx-bytes',
        'link-rx-packets',
        'link-tx-bytes',
        'link-tx-packets',
    ],
    'keyconf': [
        'peer-id',
        'slot',
        'key-id',
        'cipher-alg',
        'encrypt-dir',
        'decrypt-dir',
    ],
    'keydir': ['cipher-key', 'nonce-tail'],
    'ext-ack': ['msg', 'cookie', 'offs', 'policy', 'miss-type', 'miss-nest'],
    'policy': [
        'policy-idx',
        'policy-maxtype',
        'mask',
        'min-value-u',
        'max-value-u',
        'min-value-s',
        'max-value-s',
        'min-length',
        'max-length',
        'type',
    ],
    'link-ovpn': ['mode'],
}


# ---------------------------------------------------------------------------
# Attribute classes pyroute2 lacks.


class VarUint(nla_string):
    """NLA_UINT: 4 bytes when the value fits in 32 bits, else 8, as the
    kernel's nla_put_uint writes it. A value given as (value, width)
    forces the width (a decoder must accept 8 bytes for a small value)."""

    __slots__ = ()

    def encode(self):
        value = self.value
        if isinstance(value, (tuple, list)):
            value, width = value
        else:
            width = 4 if value <= 0xFFFFFFFF else 8
        self['value'] = struct.pack('=I' if width == 4 else '=Q', value)
        nla_string.encode(self)

    def decode(self):
        nla_string.decode(self)
        raw = self['value']
        if len(raw) == 4:
            self.value = struct.unpack('=I', raw)[0]
        elif len(raw) == 8:
            self.value = struct.unpack('=Q', raw)[0]
        else:
            raise ValueError('uint attribute of %d bytes' % len(raw))


class KeyId(nla_string):
    """`key-id`: a u32, except in KEY_SWAP_NTF where the kernel writes a
    u16 (kernel-behaviour §7.6). (value, width) picks the width."""

    __slots__ = ()

    def encode(self):
        value = self.value
        width = 4
        if isinstance(value, (tuple, list)):
            value, width = value
        self['value'] = struct.pack('=H' if width == 2 else '=I', value)
        nla_string.encode(self)

    def decode(self):
        nla_string.decode(self)
        raw = self['value']
        if len(raw) == 2:
            self.value = struct.unpack('=H', raw)[0]
        elif len(raw) == 4:
            self.value = struct.unpack('=I', raw)[0]
        else:
            raise ValueError('key-id attribute of %d bytes' % len(raw))


# Wire type -> name of the pyroute2 class (looked up on the nla class).
PYROUTE2_TYPE = {
    'u8': 'uint8',
    'u16': 'uint16',
    'u32': 'uint32',
    'u64': 'uint64',
    's32': 'int32',
    's64': 'int64',
    'be16': 'be16',
    'ipv4': 'be32',
    'ipv6': 'binary',
    'binary': 'binary',
    'string': 'asciiz',
    'uint': 'var_uint',
    'key-id': 'key_id',
}


def nla_map_of(schema, be16_flags=0):
    """A pyroute2 nla_map for one of SCHEMAS: nests name the class
    attribute `nest_<set>` and carry NLA_F_NESTED; `be16` attributes carry
    `be16_flags` (NLA_F_NET_BYTEORDER for the kernel's messages)."""
    out = []
    for number, name, wire in SCHEMAS[schema]:
        if wire.startswith('nest:'):
            cls = 'nest_' + wire[5:].replace('-', '_')
            out.append((number, name, cls, NLA_F_NESTED))
        elif wire.startswith('enum:'):
            out.append((number, name, 'uint32'))
        elif wire == 'be16':
            out.append((number, name, PYROUTE2_TYPE[wire], be16_flags))
        else:
            out.append((number, name, PYROUTE2_TYPE[wire]))
    return tuple(out)


class _Attrs(nla):
    """Base of the attribute-set classes: the extra atom types."""

    __slots__ = ()
    var_uint = VarUint
    key_id = KeyId


class KeydirAttrs(_Attrs):
    __slots__ = ()
    nla_map = nla_map_of('keydir')


class KeyconfAttrs(_Attrs):
    __slots__ = ()
    nla_map = nla_map_of('keyconf')
    nest_keydir = KeydirAttrs


class PeerAttrs(_Attrs):
    __slots__ = ()
    nla_map = nla_map_of('peer')


class KernelPeerAttrs(_Attrs):
    """The peer set as the kernel writes it: ports with nla_put_net16."""

    __slots__ = ()
    nla_map = nla_map_of('peer', NLA_F_NET_BYTEORDER)


class OvpnMsg(genlmsg):
    """Any message of the `ovpn` family (decoding; encoding requests)."""

    __slots__ = ()
    nla_map = nla_map_of('ovpn')
    nest_peer = PeerAttrs
    nest_keyconf = KeyconfAttrs


class KernelOvpnMsg(OvpnMsg):
    """Encoding the kernel's replies and notifications."""

    __slots__ = ()
    nest_peer = KernelPeerAttrs


# ---------------------------------------------------------------------------
# Errors, ACKs and DONE.


class PolicyAttrs(_Attrs):
    __slots__ = ()
    nla_map = nla_map_of('policy')


class ExtAckAttrs(_Attrs):
    """Holder of the NLMSGERR_ATTR_* map, shared by the message classes."""

    __slots__ = ()
    nla_map = nla_map_of('ext-ack')
    nest_policy = PolicyAttrs


ECHO_FIELDS = (
    ('error', 'i'),
    ('req_length', 'I'),
    ('req_type', 'H'),
    ('req_flags', 'H'),
    ('req_seq', 'I'),
    ('req_pid', 'I'),
)


def error_msg_class(echoed_payload_len):
    """The NLMSG_ERROR layout: error code, the request's 16-byte header,
    the request's payload when the error is not capped (padded to 4 bytes),
    then the extended-ACK TLVs. The payload length varies per message, so
    the class is made per length."""
    fields = ECHO_FIELDS
    if echoed_payload_len:
        padded = (echoed_payload_len + 3) & ~3
        fields = fields + (('req_payload', '%ds' % padded),)
    return type(
        'ErrorMsg%d' % echoed_payload_len,
        (nlmsg,),
        {
            '__slots__': (),
            'fields': fields,
            'nla_map': ExtAckAttrs.nla_map,
            'nest_policy': PolicyAttrs,
        },
    )


class DoneMsg(nlmsg):
    """NLMSG_DONE: the dump's error code, then extended-ACK TLVs."""

    __slots__ = ()
    fields = (('error', 'i'),)
    nla_map = ExtAckAttrs.nla_map
    nest_policy = PolicyAttrs


# ---------------------------------------------------------------------------
# rtnetlink link messages of kind "ovpn".


class OvpnInfoData(_Attrs):
    __slots__ = ()
    nla_map = nla_map_of('link-ovpn')


class OvpnLinkInfo(ifinfmsg.ifinfo):
    """IFLA_LINKINFO that knows kind "ovpn" (without touching pyroute2's
    global kind registry)."""

    __slots__ = ()
    # pyroute2 caches the compiled nla_map in class attributes that a
    # subclass would inherit from an already compiled parent.
    _nlmsg_base__compiled_nla = False

    @staticmethod
    def info_data(self, *argv, **kwarg):
        if self.get_attr('IFLA_INFO_KIND') == 'ovpn':
            return OvpnInfoData
        return self.hex


class OvpnLinkMsg(ifinfmsg):
    __slots__ = ()
    _nlmsg_base__compiled_nla = False
    nla_map = tuple(
        ('IFLA_LINKINFO', 'ovpn_linkinfo') if item[0] == 'IFLA_LINKINFO' else item
        for item in ifinfmsg.nla_map
    )
    ovpn_linkinfo = OvpnLinkInfo


CtrlMsg = ctrlmsg

"""Differential check of `ovpn-netlink` against pyroute2.

Usage: diff.py CASES.json RESULTS.json

CASES.json holds {"cases": [...]}; each case is a logical message (what it
means, in spec names) plus `hex`, the bytes our Rust crate encoded for it.
For every case this script

1. encodes the logical message with pyroute2 and compares the bytes with
   ours, byte for byte;
2. decodes our bytes with pyroute2 and compares every field with the
   logical message, and checks what the kernel guarantees beyond values:
   attribute order (kernel-behaviour §7.6/§7.7), NLA_F_NESTED on nests
   and only there, NLA_F_NET_BYTEORDER on ports exactly in the messages
   the kernel sends (case field `sender`: "kernel" or "client"), the
   narrowest `uint` width;
3. emits pyroute2's bytes and a variant (attributes in reverse order,
   every `uint` widened to 8 bytes) for the Rust side to decode, and what
   pyroute2 read from our bytes (`decoded`, spec names) for the Rust side
   to compare with our generic view.

RESULTS.json gets {"results": [{"name", "problems", "py_hex",
"variant_hex", "decoded"}]}; an empty `problems` list means the case
agrees.

Exit status: 0 when it ran (whatever it found), 3 when pyroute2 cannot be
imported, 1 on a bug in this script.
"""

import ipaddress
import json
import struct
import sys
import traceback

try:
    import pyroute2  # noqa: F401
except ImportError as e:
    print('pyroute2 is not installed: %s' % e, file=sys.stderr)
    sys.exit(3)

import ovpn_family as fam  # noqa: E402
from pyroute2.netlink import NLA_F_NESTED, NLA_F_NET_BYTEORDER  # noqa: E402

NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_MULTI = 0x2
NLM_F_CAPPED = 0x100
NLM_F_ACK_TLVS = 0x200
# TLVs the kernel sends with an ACK (error 0); the rest only with errors
# (netlink_ack_tlv_fill).
TLVS_ON_ACK = ('msg', 'cookie')


class Problems(list):
    def add(self, fmt, *args):
        self.append(fmt % args if args else fmt)


# ---------------------------------------------------------------------------
# Logical values <-> pyroute2 values, driven by fam.SCHEMAS.


def schema_entry(schema, name):
    for number, n, wire in fam.SCHEMAS[schema]:
        if n == name:
            return number, wire
    raise KeyError('%s has no attribute %r' % (schema, name))


def ordered(schema, logical):
    order = fam.KERNEL_ORDER[schema]
    unknown = [k for k in logical if k not in order]
    if unknown:
        raise KeyError('no kernel order for %s in %s' % (unknown, schema))
    return sorted(logical, key=order.index)


def to_pyroute2(schema, logical, opts):
    """pyroute2 `attrs` for a logical dict. opts: key_id_width (2 or 4),
    wide_uint (bool), reverse (bool)."""
    attrs = []
    for name in ordered(schema, logical):
        value = logical[name]
        _, wire = schema_entry(schema, name)
        attrs.append((name, encode_value(wire, value, opts)))
    if opts.get('reverse'):
        attrs.reverse()
    return attrs


def encode_value(wire, value, opts):
    if wire.startswith('nest:'):
        return {'attrs': to_pyroute2(wire[5:], value, opts)}
    if wire.startswith('enum:'):
        entries = fam.ENUMS[wire[5:]]
        return entries.index(value) if isinstance(value, str) else value
    if wire == 'ipv4':
        return int(ipaddress.IPv4Address(value))
    if wire == 'ipv6':
        return ipaddress.IPv6Address(value).packed
    if wire == 'binary':
        return bytes.fromhex(value)
    if wire == 'uint' and opts.get('wide_uint'):
        return (value, 8)
    if wire == 'key-id':
        return (value, opts.get('key_id_width', 4))
    return value


def from_pyroute2(schema, nla, problems, path, opts):
    """Logical dict of a decoded pyroute2 attribute list, checking flags,
    widths and kernel order on the way."""
    out = {}
    names = []
    for slot in nla['attrs']:
        name = slot.name
        where = '%s/%s' % (path, name)
        if name == 'UNKNOWN':
            raw = slot.cell[1]
            problems.add('%s: attribute pyroute2 does not know (%d bytes)', where, raw.length)
            continue
        _, wire = schema_entry(schema, name)
        flags = slot.get_flags() or 0
        is_nest = wire.startswith('nest:')
        if is_nest and not flags & NLA_F_NESTED:
            problems.add('%s: nest without NLA_F_NESTED', where)
        if not is_nest and flags & NLA_F_NESTED:
            problems.add('%s: NLA_F_NESTED on a non-nested attribute', where)
        # The kernel writes ports with nla_put_net16 (NLA_F_NET_BYTEORDER);
        # clients (libnl, ovpn-cli) send them without; nothing else has it.
        want_byteorder = wire == 'be16' and bool(opts.get('net_byteorder'))
        if bool(flags & NLA_F_NET_BYTEORDER) != want_byteorder:
            problems.add(
                '%s: NLA_F_NET_BYTEORDER %s, expected %s',
                where,
                'set' if flags & NLA_F_NET_BYTEORDER else 'not set',
                'set (kernel message)' if want_byteorder else 'not set',
            )
        if name in out:
            problems.add('%s: attribute repeated', where)
        names.append(name)
        out[name] = decode_value(wire, slot, problems, where, opts)
    if names != ordered(schema, dict.fromkeys(names)):
        problems.add('%s: attribute order %s is not the kernel order', path or '/', names)
    return out


def decode_value(wire, slot, problems, where, opts):
    value = slot.value
    payload_len = slot.cell[1].length - 4
    if wire.startswith('nest:'):
        return from_pyroute2(wire[5:], value, problems, where, opts)
    if wire.startswith('enum:'):
        entries = fam.ENUMS[wire[5:]]
        return entries[value] if value < len(entries) else value
    if wire == 'ipv4':
        return str(ipaddress.IPv4Address(value))
    if wire == 'ipv6':
        if len(value) != 16:
            problems.add('%s: IPv6 address of %d bytes', where, len(value))
            return value.hex()
        return str(ipaddress.IPv6Address(value))
    if wire == 'binary':
        return bytes(value).hex()
    if wire == 'uint':
        narrowest = 4 if value <= 0xFFFFFFFF else 8
        if payload_len != narrowest:
            problems.add('%s: uint %d in %d bytes, the kernel uses %d', where, value, payload_len, narrowest)
    if wire == 'key-id':
        want = opts.get('key_id_width', 4)
        if payload_len != want:
            problems.add('%s: key-id in %d bytes, expected %d', where, payload_len, want)
    return value


# ---------------------------------------------------------------------------
# Per-kind encode and decode.


def header_of(case, length=None):
    h = case['header']
    out = {'type': h['type'], 'flags': h['flags'], 'sequence_number': h['seq'], 'pid': h['pid']}
    return out


def check_header(msg, case, ours, problems):
    h = msg['header']
    want = case['header']
    for field, key in (('type', 'type'), ('flags', 'flags'), ('sequence_number', 'seq'), ('pid', 'pid')):
        if h[field] != want[key]:
            problems.add('header %s: pyroute2 reads %d, expected %d', key, h[field], want[key])
    if h['length'] != len(ours):
        problems.add('header length %d but %d bytes', h['length'], len(ours))


def ovpn_opts(case, variant=False):
    # KEY_SWAP_NTF carries key-id as a u16 (kernel-behaviour §7.6).
    width = 2 if case['cmd'] == 'key-swap-ntf' else 4
    return {
        'key_id_width': width,
        'wide_uint': variant,
        'reverse': variant,
        'net_byteorder': case['sender'] == 'kernel',
    }


def encode_ovpn(case, variant=False):
    msg = fam.KernelOvpnMsg() if case['sender'] == 'kernel' else fam.OvpnMsg()
    msg['header'] = header_of(case)
    msg['cmd'] = fam.COMMANDS[case['cmd']]
    msg['version'] = fam.FAMILY_VERSION
    msg['attrs'] = to_pyroute2('ovpn', case['attrs'], ovpn_opts(case, variant))
    msg.encode()
    return bytes(msg.data)


def decode_ovpn(case, ours, problems):
    msg = fam.OvpnMsg(bytearray(ours))
    msg.decode()
    check_header(msg, case, ours, problems)
    if msg['cmd'] != fam.COMMANDS[case['cmd']]:
        problems.add('cmd %d, expected %s', msg['cmd'], case['cmd'])
    if msg['version'] != fam.FAMILY_VERSION or msg['reserved'] != 0:
        problems.add('genl version %d reserved %d', msg['version'], msg['reserved'])
    got = from_pyroute2('ovpn', msg, problems, '', ovpn_opts(case))
    compare(got, case['attrs'], problems, '')
    return got


def ext_ack_tlvs(case):
    """The TLVs the kernel would send for this case's extended ACK."""
    if not case['options']['ext_ack']:
        return {}
    ext = dict(case['ext'])
    if case['errno'] == 0:
        ext = {k: v for k, v in ext.items() if k in TLVS_ON_ACK}
    return ext


def encode_error(case, variant=False):
    request = bytes.fromhex(case['request'])
    req_len, req_type, req_flags, req_seq, req_pid = struct.unpack_from('=IHHII', request)
    capped = case['errno'] == 0 or case['options']['cap_ack']
    echoed = b'' if capped else request[16:req_len]
    tlvs = ext_ack_tlvs(case)
    flags = (NLM_F_CAPPED if capped else 0) | (NLM_F_ACK_TLVS if tlvs else 0)

    msg = fam.error_msg_class(len(echoed))()
    msg['header'] = {'type': NLMSG_ERROR, 'flags': flags, 'sequence_number': req_seq, 'pid': case['port_id']}
    msg['error'] = -case['errno']
    msg['req_length'] = req_len
    msg['req_type'] = req_type
    msg['req_flags'] = req_flags
    msg['req_seq'] = req_seq
    msg['req_pid'] = req_pid
    if echoed:
        msg['req_payload'] = echoed + b'\0' * (-len(echoed) % 4)
    msg['attrs'] = to_pyroute2('ext-ack', tlvs, {'reverse': variant})
    msg.encode()
    return bytes(msg.data)


def decode_error(case, ours, problems):
    flags = struct.unpack_from('=H', ours, 6)[0]
    req_len = struct.unpack_from('=I', ours, 20)[0]
    echoed_len = 0 if flags & NLM_F_CAPPED else req_len - 16
    msg = fam.error_msg_class(echoed_len)(bytearray(ours))
    msg.decode()
    check_header(msg, case, ours, problems)
    if msg['error'] != -case['errno']:
        problems.add('error %d, expected %d', msg['error'], -case['errno'])
    request = bytes.fromhex(case['request'])
    echoed_hdr = struct.pack(
        '=IHHII', msg['req_length'], msg['req_type'], msg['req_flags'], msg['req_seq'], msg['req_pid']
    )
    if echoed_hdr != request[:16]:
        problems.add('echoed header %s, request header %s', echoed_hdr.hex(), request[:16].hex())
    if echoed_len:
        got_payload = msg['req_payload'][:echoed_len]
        if got_payload != request[16:req_len]:
            problems.add('echoed payload %s differs from the request', got_payload.hex())
    got = from_pyroute2('ext-ack', msg, problems, '', {})
    compare(got, ext_ack_tlvs(case), problems, '')
    return dict(got, errno=-msg['error'])


def encode_done(case, variant=False):
    tlvs = ext_ack_tlvs(case)
    msg = fam.DoneMsg()
    h = header_of(case)
    h['flags'] = NLM_F_MULTI | (NLM_F_ACK_TLVS if tlvs else 0)
    msg['header'] = h
    msg['error'] = -case['errno']
    msg['attrs'] = to_pyroute2('ext-ack', tlvs, {'reverse': variant})
    msg.encode()
    return bytes(msg.data)


def decode_done(case, ours, problems):
    msg = fam.DoneMsg(bytearray(ours))
    msg.decode()
    check_header(msg, case, ours, problems)
    if msg['error'] != -case['errno']:
        problems.add('error %d, expected %d', msg['error'], -case['errno'])
    got = from_pyroute2('ext-ack', msg, problems, '', {})
    compare(got, ext_ack_tlvs(case), problems, '')
    return dict(got, errno=-msg['error'])


# nlctrl (include/uapi/linux/genetlink.h). The kernel's ctrl_fill_info
# writes name, id, version, header size, max attribute, then the ops and
# multicast groups as nests WITHOUT NLA_F_NESTED (index-numbered entries
# from 1; ops as id, flags; groups as id, name).
CTRL_ORDER = ['family-name', 'family-id', 'version', 'hdrsize', 'maxattr', 'ops', 'mcast-groups']
CTRL_NAMES = {
    'family-name': 'CTRL_ATTR_FAMILY_NAME',
    'family-id': 'CTRL_ATTR_FAMILY_ID',
    'version': 'CTRL_ATTR_VERSION',
    'hdrsize': 'CTRL_ATTR_HDRSIZE',
    'maxattr': 'CTRL_ATTR_MAXATTR',
    'ops': 'CTRL_ATTR_OPS',
    'mcast-groups': 'CTRL_ATTR_MCAST_GROUPS',
}
GENL_ADMIN_PERM = 0x1
GENL_CMD_CAP_DO = 0x2
GENL_CMD_CAP_DUMP = 0x4
GENL_CMD_CAP_HASPOL = 0x8


def ovpn_ops_from_spec():
    """(command, flags) of every request op in spec/ovpn.yaml: all are
    admin-perm with a policy and a do handler; peer-get also dumps."""
    out = []
    for name, cmd in sorted(fam.COMMANDS.items(), key=lambda x: x[1]):
        if name.endswith('-ntf'):
            continue
        flags = GENL_ADMIN_PERM | GENL_CMD_CAP_DO | GENL_CMD_CAP_HASPOL
        if name == 'peer-get':
            flags |= GENL_CMD_CAP_DUMP
        out.append([cmd, flags])
    return out


def encode_ctrl(case, variant=False):
    logical = case['attrs']
    attrs = []
    for key in [k for k in CTRL_ORDER if k in logical]:
        value = logical[key]
        if key == 'ops':
            value = [{'attrs': [('CTRL_ATTR_OP_ID', i), ('CTRL_ATTR_OP_FLAGS', f)]} for i, f in value]
        elif key == 'mcast-groups':
            value = [
                {'attrs': [('CTRL_ATTR_MCAST_GRP_ID', i), ('CTRL_ATTR_MCAST_GRP_NAME', n)]} for n, i in value
            ]
        attrs.append((CTRL_NAMES[key], value))
    if variant:
        attrs.reverse()
    msg = fam.CtrlMsg()
    msg['header'] = header_of(case)
    msg['cmd'] = case['cmd']
    msg['version'] = case['version']
    msg['attrs'] = attrs
    msg.encode()
    return bytes(msg.data)


def decode_ctrl(case, ours, problems):
    msg = fam.CtrlMsg(bytearray(ours))
    msg.decode()
    check_header(msg, case, ours, problems)
    if (msg['cmd'], msg['version']) != (case['cmd'], case['version']):
        problems.add('genl cmd/version %d/%d', msg['cmd'], msg['version'])
    reverse = {v: k for k, v in CTRL_NAMES.items()}
    got = {}
    names = []
    for slot in msg['attrs']:
        if slot.name not in reverse:
            problems.add('unexpected nlctrl attribute %s', slot.name)
            continue
        key = reverse[slot.name]
        names.append(key)
        value = slot.value
        if key in ('ops', 'mcast-groups'):
            if slot.get_flags():
                problems.add('%s: NLA_F_NESTED set, the kernel sends it without', key)
            entries = slot.cell[1].value
            value = []
            for index, entry in enumerate(entries, 1):
                # pyroute2 drops decoded headers; read the raw type field.
                raw_type = struct.unpack_from('=H', entry.data, entry.offset + 2)[0]
                if raw_type != index:
                    problems.add('%s: entry %d has type field %#x', key, index, raw_type)
                if key == 'ops':
                    inner = [a[0] for a in entry['attrs']]
                    if inner != ['CTRL_ATTR_OP_ID', 'CTRL_ATTR_OP_FLAGS']:
                        problems.add('ops entry %d: attributes %s', index, inner)
                    value.append([entry.get_attr('CTRL_ATTR_OP_ID'), entry.get_attr('CTRL_ATTR_OP_FLAGS')])
                else:
                    inner = [a[0] for a in entry['attrs']]
                    if inner != ['CTRL_ATTR_MCAST_GRP_ID', 'CTRL_ATTR_MCAST_GRP_NAME']:
                        problems.add('group entry %d: attributes %s', index, inner)
                    value.append([entry.get_attr('CTRL_ATTR_MCAST_GRP_NAME'), entry.get_attr('CTRL_ATTR_MCAST_GRP_ID')])
        got[key] = value
    if names != [k for k in CTRL_ORDER if k in names]:
        problems.add('nlctrl attribute order %s is not the kernel order', names)
    compare(got, case['attrs'], problems, '')
    decoded = dict(got, cmd=msg['cmd'])
    if got.get('family-name') == 'ovpn' and 'ops' in got and got['ops'] != ovpn_ops_from_spec():
        problems.add('ovpn ops %s, spec/ovpn.yaml says %s', got['ops'], ovpn_ops_from_spec())
    return decoded


# rtnetlink links: ifinfomsg, then IFLA_IFNAME, IFLA_MTU, IFLA_LINKINFO
# (the kernel's rtnl_fill_ifinfo order for these three); link info holds
# IFLA_INFO_KIND then IFLA_INFO_DATA, both nests without NLA_F_NESTED as
# the kernel (nla_nest_start_noflag) and iproute2 write them.
LINK_MODES = ['p2p', 'mp']
IFINFO_FIELDS = {'family': 'family', 'ifi_type': 'type', 'index': 'index', 'flags': 'flags', 'change': 'change'}


def encode_link(case, variant=False):
    logical = case['attrs']
    attrs = []
    if 'ifname' in logical:
        attrs.append(('IFLA_IFNAME', logical['ifname']))
    if 'mtu' in logical:
        attrs.append(('IFLA_MTU', logical['mtu']))
    if 'kind' in logical or 'mode' in logical:
        info = []
        if 'kind' in logical:
            info.append(('IFLA_INFO_KIND', logical['kind']))
        if 'mode' in logical:
            info.append(('IFLA_INFO_DATA', {'attrs': [('mode', LINK_MODES.index(logical['mode']))]}))
        attrs.append(('IFLA_LINKINFO', {'attrs': info}))
    if variant:
        attrs.reverse()
    msg = fam.OvpnLinkMsg()
    msg['header'] = header_of(case)
    for field, key in IFINFO_FIELDS.items():
        msg[field] = case['ifinfo'][key]
    msg['attrs'] = attrs
    msg.encode()
    return bytes(msg.data)


def decode_link(case, ours, problems):
    msg = fam.OvpnLinkMsg(bytearray(ours))
    msg.decode()
    check_header(msg, case, ours, problems)
    for field, key in IFINFO_FIELDS.items():
        if msg[field] != case['ifinfo'][key]:
            problems.add('ifinfomsg %s: pyroute2 reads %r, expected %r', key, msg[field], case['ifinfo'][key])
    got = {}
    names = [slot.name for slot in msg['attrs']]
    if names != [n for n in ('IFLA_IFNAME', 'IFLA_MTU', 'IFLA_LINKINFO') if n in names]:
        problems.add('link attributes %s not in the kernel order', names)
    for slot in msg['attrs']:
        if slot.get_flags():
            problems.add('%s: flags %#x set', slot.name, slot.get_flags())
        if slot.name == 'IFLA_IFNAME':
            got['ifname'] = slot.value
        elif slot.name == 'IFLA_MTU':
            got['mtu'] = slot.value
        elif slot.name == 'IFLA_LINKINFO':
            info = slot.value
            inner = [s.name for s in info['attrs']]
            if inner != [n for n in ('IFLA_INFO_KIND', 'IFLA_INFO_DATA') if n in inner]:
                problems.add('link info attributes %s', inner)
            for s in info['attrs']:
                if s.get_flags():
                    problems.add('%s: flags %#x set', s.name, s.get_flags())
            if info.get_attr('IFLA_INFO_KIND') is not None:
                got['kind'] = info.get_attr('IFLA_INFO_KIND')
            data = info.get_attr('IFLA_INFO_DATA')
            if data is not None:
                if not isinstance(data, fam.OvpnInfoData):
                    problems.add('IFLA_INFO_DATA not decoded as ovpn data: %r', data)
                else:
                    mode_slots = [s for s in data['attrs'] if s.name == 'mode']
                    if len(data['attrs']) != 1 or len(mode_slots) != 1:
                        problems.add('IFLA_INFO_DATA holds %s', [s.name for s in data['attrs']])
                    if mode_slots:
                        if mode_slots[0].cell[1].length != 5:
                            problems.add('IFLA_OVPN_MODE is not a u8')
                        mode = mode_slots[0].value
                        got['mode'] = LINK_MODES[mode] if mode < 2 else mode
        else:
            problems.add('unexpected link attribute %s', slot.name)
    compare(got, case['attrs'], problems, '')
    return dict(got, ifinfo={key: msg[field] for field, key in IFINFO_FIELDS.items()})


KINDS = {
    'ovpn': (encode_ovpn, decode_ovpn),
    'error': (encode_error, decode_error),
    'done': (encode_done, decode_done),
    'ctrl': (encode_ctrl, decode_ctrl),
    'link': (encode_link, decode_link),
}


# ---------------------------------------------------------------------------


def compare(got, want, problems, path):
    for key in sorted(set(got) | set(want), key=str):
        where = '%s/%s' % (path, key)
        if key not in got:
            problems.add('%s: missing in our bytes (expected %r)', where, want[key])
        elif key not in want:
            problems.add('%s: in our bytes but not in the message (%r)', where, got[key])
        elif isinstance(want[key], dict) and isinstance(got[key], dict):
            compare(got[key], want[key], problems, where)
        elif got[key] != want[key]:
            problems.add('%s: pyroute2 reads %r, expected %r', where, got[key], want[key])


def first_difference(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


def run_case(case):
    problems = Problems()
    encode, decode = KINDS[case['kind']]
    ours = bytes.fromhex(case['hex'])
    py = encode(case)
    if py != ours:
        at = first_difference(py, ours)
        problems.add(
            'bytes differ at offset %d (pyroute2 %d bytes, ours %d)\n  pyroute2: %s\n  ours:     %s',
            at,
            len(py),
            len(ours),
            py.hex(),
            ours.hex(),
        )
    decoded = decode(case, ours, problems)
    variant = encode(case, variant=True)
    return {
        'name': case['name'],
        'problems': problems,
        'py_hex': py.hex(),
        'variant_hex': variant.hex(),
        'decoded': decoded,
    }


def main():
    cases_path, results_path = sys.argv[1], sys.argv[2]
    with open(cases_path) as f:
        cases = json.load(f)['cases']
    results = []
    for case in cases:
        try:
            results.append(run_case(case))
        except Exception:
            results.append(
                {'name': case['name'], 'problems': ['exception:\n' + traceback.format_exc()], 'py_hex': '', 'variant_hex': ''}
            )
    with open(results_path, 'w') as f:
        json.dump({'pyroute2': pyroute2.__version__, 'results': results}, f, indent=1)


if __name__ == '__main__':
    main()

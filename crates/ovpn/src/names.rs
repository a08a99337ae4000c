//! Spec names for attribute paths, so that an extended ACK's offset into a
//! request reads as `peer.remote-ipv6` instead of "offset 40". The names are
//! those of `spec/ovpn.yaml` (through `ovpn_netlink::ovpn::attrs`) and of the
//! kernel's `rt-link` YNL spec for the link subset.

use ovpn_netlink::link::{
    IFLA_IFNAME, IFLA_INFO_DATA, IFLA_INFO_KIND, IFLA_LINKINFO, IFLA_MTU, IFLA_OVPN_MODE,
};
use ovpn_netlink::ovpn::attrs::{
    self, keyconf_attr_name, keydir_attr_name, peer_attr_name, top_attr_name,
};

/// Which attribute space a request's attributes belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Schema {
    /// The `ovpn` generic-netlink family.
    Ovpn,
    /// rtnetlink links.
    Link,
    /// Anything else (nlctrl, our daemon messages): numbers only.
    Numbers,
}

/// The dotted spec-name path of the attribute reached by `types`, outermost
/// first; types without a name print as `attr-N`.
pub(crate) fn path(schema: Schema, types: &[u16]) -> String {
    let mut names = Vec::with_capacity(types.len());
    let mut space = Space::root(schema);
    for &ty in types {
        names.push(space.name(ty));
        space = space.child(ty);
    }
    names.join(".")
}

/// The path of a missing attribute of type `ty` inside the nest reached by
/// `nest` (empty at the top level).
pub(crate) fn missing_path(schema: Schema, nest: &[u16], ty: u16) -> String {
    let mut space = Space::root(schema);
    for &t in nest {
        space = space.child(t);
    }
    let last = space.name(ty);
    if nest.is_empty() {
        last
    } else {
        format!("{}.{last}", path(schema, nest))
    }
}

/// An attribute set: which names its members have and which nests they open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Space {
    OvpnTop,
    Peer,
    Keyconf,
    Keydir,
    LinkTop,
    LinkInfo,
    LinkData,
    Unnamed,
}

impl Space {
    fn root(schema: Schema) -> Self {
        match schema {
            Schema::Ovpn => Self::OvpnTop,
            Schema::Link => Self::LinkTop,
            Schema::Numbers => Self::Unnamed,
        }
    }

    fn name(self, ty: u16) -> String {
        let known = match self {
            Self::OvpnTop => top_attr_name(ty),
            Self::Peer => peer_attr_name(ty),
            Self::Keyconf => keyconf_attr_name(ty),
            Self::Keydir => keydir_attr_name(ty),
            Self::LinkTop => match ty {
                IFLA_IFNAME => Some("ifname"),
                IFLA_MTU => Some("mtu"),
                IFLA_LINKINFO => Some("linkinfo"),
                _ => None,
            },
            Self::LinkInfo => match ty {
                IFLA_INFO_KIND => Some("kind"),
                IFLA_INFO_DATA => Some("data"),
                _ => None,
            },
            Self::LinkData => (ty == IFLA_OVPN_MODE).then_some("mode"),
            Self::Unnamed => None,
        };
        known.map_or_else(|| format!("attr-{ty}"), str::to_owned)
    }

    fn child(self, ty: u16) -> Self {
        match (self, ty) {
            (Self::OvpnTop, attrs::top::PEER) => Self::Peer,
            (Self::OvpnTop, attrs::top::KEYCONF) => Self::Keyconf,
            (Self::Keyconf, attrs::keyconf::ENCRYPT_DIR | attrs::keyconf::DECRYPT_DIR) => {
                Self::Keydir
            }
            (Self::LinkTop, IFLA_LINKINFO) => Self::LinkInfo,
            (Self::LinkInfo, IFLA_INFO_DATA) => Self::LinkData,
            _ => Self::Unnamed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ovpn_netlink::ovpn::attrs::{keyconf, keydir, peer, top};

    #[test]
    fn ovpn_paths() {
        assert_eq!(
            path(Schema::Ovpn, &[top::PEER, peer::REMOTE_IPV6]),
            "peer.remote-ipv6"
        );
        assert_eq!(
            path(
                Schema::Ovpn,
                &[top::KEYCONF, keyconf::DECRYPT_DIR, keydir::NONCE_TAIL]
            ),
            "keyconf.decrypt-dir.nonce-tail"
        );
        assert_eq!(path(Schema::Ovpn, &[top::IFINDEX]), "ifindex");
        assert_eq!(path(Schema::Ovpn, &[top::PEER, 99]), "peer.attr-99");
    }

    #[test]
    fn missing_paths() {
        assert_eq!(
            missing_path(Schema::Ovpn, &[top::PEER], peer::ID),
            "peer.id"
        );
        assert_eq!(missing_path(Schema::Ovpn, &[], top::IFINDEX), "ifindex");
        assert_eq!(
            missing_path(Schema::Ovpn, &[top::KEYCONF], keyconf::SLOT),
            "keyconf.slot"
        );
    }

    #[test]
    fn link_paths() {
        assert_eq!(
            path(
                Schema::Link,
                &[IFLA_LINKINFO, IFLA_INFO_DATA, IFLA_OVPN_MODE]
            ),
            "linkinfo.data.mode"
        );
        assert_eq!(path(Schema::Numbers, &[2, 1]), "attr-2.attr-1");
    }
}

// Package dns is podnet's cluster DNS server: the Kubernetes DNS-Based Service Discovery
// specification, schema 1.1.0 (github.com/kubernetes/dns, docs/specification.md), served with
// github.com/miekg/dns, plus forwarding of every other name to upstream servers through a cache.
//
// # Parts
//
//   - Index: every name of the cluster zone, built from Services, EndpointSlices, Namespaces (and
//     Pods in the "verified" pod mode). Readers see an immutable snapshot through one atomic pointer:
//     256 shards of map[lowercased FQDN]*node, where a node holds its RRsets both as miekg RRs and
//     pre-packed in wire format. A change to one Service re-derives that Service's names only, and
//     publishes a new snapshot that shares every untouched shard with the old one. Index.Watch keeps
//     it current from client-go informers.
//   - Resolver: answers one question from the Index as a *dns.Msg (pure; what the tables test).
//   - Forwarder: names outside the cluster domain (and reverse names the Index does not know) go to
//     upstream servers, through a cache that honours TTLs and caches negative answers for the SOA
//     MINIMUM (RFC 2308).
//   - Server: UDP and TCP on sockets it is given (so the lab can make them inside a network
//     namespace). The common case — one question in the cluster zone, at most an OPT record — is
//     answered on the UDP reader goroutine straight from the pre-packed wire bytes, without
//     unpacking the query into a dns.Msg and without allocating; the answer's owner names are a
//     compression pointer to the question, so they repeat the client's spelling. Everything else
//     takes the dns.Msg path (Resolver, Forwarder, FORMERR/NOTIMP/BADVERS) on a goroutine of its
//     own. EDNS0: the OPT record is echoed (DO bit included) with our payload size, 1232 by
//     default; a UDP answer is at most min(client's size, ours), 512 without EDNS0. What does not
//     fit loses its Additional records first (no TC), then is truncated with the TC bit set; TCP
//     answers are never truncated. Multi-record A/AAAA answers rotate (CoreDNS's loadbalance).
//     On a wildcard UDP socket answers leave from the address the query was sent to (PKTINFO).
//   - Metrics: CoreDNS's metric names under the podnet_dns_ prefix, on a registry of the server's own.
//
// # Records (schema 1.1.0)
//
//   - dns-version.<zone> TXT "1.1.0".
//   - <svc>.<ns>.svc.<zone>: A/AAAA with the ClusterIPs of a ClusterIP/NodePort/LoadBalancer Service
//     (dual-stack Services get both); for a headless Service one A/AAAA per ready endpoint, and
//     NXDOMAIN when it has none; a CNAME to spec.externalName for an ExternalName Service (queries of
//     other types follow the CNAME, in the cluster zone from the Index, elsewhere via the Forwarder).
//   - <hostname>.<svc>.<ns>.svc.<zone> A/AAAA for each ready endpoint of a headless Service. The
//     hostname is the endpoint's hostname field (set by the EndpointSlice controller from a pod's
//     spec.hostname when its spec.subdomain names the Service: this is how pod hostname + subdomain
//     records exist), otherwise the spec's "system-assigned identifier", which here is the endpoint
//     address with '.' or ':' replaced by '-' (10-244-1-5, fd00--5), as CoreDNS does.
//   - _<port>._<proto>.<svc>.<ns>.svc.<zone> SRV for each named port: priority 0, weight 100, target
//     the Service name (ClusterIP) or one target per ready endpoint hostname (headless, with the
//     port number from the endpoint's EndpointSlice). The Additional section carries the targets'
//     A/AAAA records. Unnamed ports have no SRV record.
//   - PTR for every ClusterIP (-> <svc>.<ns>.svc.<zone>) and for every ready endpoint address of a
//     headless Service (-> <hostname>.<svc>.<ns>.svc.<zone>), in in-addr.arpa and ip6.arpa. Reverse
//     names the Index does not know are forwarded upstream, like CoreDNS's default
//     "fallthrough in-addr.arpa ip6.arpa".
//   - Ready means the endpoint's ready condition is true or unset, or the Service has
//     spec.publishNotReadyAddresses (or the legacy tolerate-unready-endpoints annotation).
//   - Pod records <a>-<b>-<c>-<d>.<ns>.pod.<zone> (and IPv6 with '-' for ':'), which 1.1.0 keeps
//     only as a deprecated record. PodModeInsecure (the default) answers them for any address in an
//     existing namespace without checking that a pod has it, as CoreDNS's "pods insecure" (the
//     kubeadm default) does; PodModeVerified answers only addresses that a pod in that namespace has
//     (and only then watches Pods); PodModeDisabled has no pod subtree.
//   - The zone apex has SOA (mname ns.dns.<zone>, rname hostmaster.<zone>, serial = the Unix time
//     of the last change, refresh 7200, retry 1800, expire 86400, minimum = TTL) and NS
//     ns.dns.<zone>, whose A/AAAA are Config.NameserverAddrs.
//
// # Answers
//
// Names compare case-insensitively and answers carry the question's spelling. A name that exists
// without the asked type (an existing name of another type, or an empty non-terminal such as
// svc.<zone>, <ns>.svc.<zone> or _tcp.<svc>.<ns>.svc.<zone>) is NODATA: NOERROR, empty answer, the
// zone's SOA in the authority section; a name that does not exist is NXDOMAIN with the SOA. A
// namespace exists when a Namespace object or a Service in it exists. Before the first full sync of
// the Index, what would be NXDOMAIN or NODATA is SERVFAIL instead, so nothing caches a wrong
// negative answer. Cluster answers are authoritative (AA) and every answer has RA set. ANY gets
// every RRset of the name. Classes other than IN are REFUSED in the zone.
//
// # TTL
//
// Cluster records get Config.TTL, default 30 s (CoreDNS uses 5 s; the spec leaves it to the
// implementation). 30 s lets pods' resolvers and node caches absorb repeated lookups while a changed
// Service or endpoint is seen within half a minute; negative answers are cached for the same time
// (the SOA MINIMUM). dns-version has 28800 s, as in the spec's example.
package dns

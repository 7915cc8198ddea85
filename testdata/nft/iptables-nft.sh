#!/bin/sh
# iptables-nft rules (iptables v1.8.9 (nf_tables)), run inside the throwaway namespace.
set -e
iptables-nft -A INPUT -p udp --dport 47020 -j DROP
iptables-nft -A INPUT -p tcp -m multiport --dports 3000,3001 -j DROP
iptables-nft -A INPUT -s 192.0.2.0/24 -p tcp -j REJECT --reject-with tcp-reset
iptables-nft -A FORWARD -i veth0 -m conntrack --ctstate INVALID -j DROP
iptables-nft -N LOGDROP
iptables-nft -A LOGDROP -m limit --limit 1/s -j LOG --log-prefix "dropped: "
iptables-nft -A LOGDROP -j DROP
iptables-nft -A INPUT -p tcp --dport 8443 -j LOGDROP
ip6tables-nft -A INPUT -p udp --sport 500 -j DROP

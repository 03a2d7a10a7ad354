package main

import (
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"

	sockaddr "github.com/hashicorp/go-sockaddr"

	"github.com/kalcifer/kalcifer/cluster"
	"github.com/kalcifer/kalcifer/config"
)

// clusterConfig turns the cluster settings into the node's cluster configuration; a single node gets
// the zero value (loopback, a free gRPC port, no gossip).
func clusterConfig(c config.Cluster) (cluster.Config, error) {
	if !c.Enabled() {
		return cluster.Config{}, nil
	}
	listen, advertise := c.GRPCAddress()
	host, portText, _ := net.SplitHostPort(listen)
	advHost, _, _ := net.SplitHostPort(advertise)
	port, _ := strconv.Atoi(portText)
	ip, err := advertiseIP(advHost)
	if err != nil {
		return cluster.Config{}, err
	}
	_, gossipPort, _ := net.SplitHostPort(cmp.Or(c.Advertise, c.Bind))
	cc := cluster.Config{
		Host: host, Port: port, AdvertiseHost: ip,
		Gossip: cluster.Gossip{
			Bind: c.Bind, Advertise: net.JoinHostPort(ip, gossipPort), Seeds: c.Seeds,
			ProbeInterval: c.ProbeInterval, SuspicionMult: c.SuspicionMult, SecretKey: c.SecretKey,
		},
	}
	if c.TLSCert == "" {
		return cc, nil
	}
	cc.ServerTLS, cc.ClientTLS, err = mutualTLS(c.TLSCert, c.TLSKey, c.TLSCA)
	return cc, err
}

// advertiseIP is the address the other nodes dial, which memberlist needs as an IP: a host name is
// resolved (a container's service name), and a wildcard bind (0.0.0.0) advertises this machine's private
// address, as memberlist itself would choose.
func advertiseIP(host string) (string, error) {
	if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
		return host, nil
	}
	if ip := net.ParseIP(host); ip != nil {
		private, err := sockaddr.GetPrivateIP()
		if err != nil || private == "" {
			return "", fmt.Errorf("cluster: no private address to advertise for the wildcard bind %s (set cluster_advertise): %v", host, err)
		}
		return private, nil
	}
	ips, err := net.LookupIP(host)
	if err != nil || len(ips) == 0 {
		return "", fmt.Errorf("cluster: resolve advertised host %q: %v", host, err)
	}
	return ips[0].String(), nil
}

// mutualTLS loads the node's certificate and the cluster CA: servers require a client certificate the CA
// signed, and clients accept only servers the CA signed.
func mutualTLS(certFile, keyFile, caFile string) (server, client *tls.Config, err error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster TLS: load %s and %s: %w", certFile, keyFile, err)
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster TLS: read CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, nil, errors.New("cluster TLS: " + caFile + " holds no PEM certificate")
	}
	server = &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS13}
	client = &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS13}
	return server, client, nil
}

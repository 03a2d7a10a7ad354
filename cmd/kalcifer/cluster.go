package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"

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
	cc := cluster.Config{
		Host: host, Port: port, AdvertiseHost: advHost,
		Gossip: cluster.Gossip{
			Bind: c.Bind, Advertise: c.Advertise, Seeds: c.Seeds,
			ProbeInterval: c.ProbeInterval, SuspicionMult: c.SuspicionMult, SecretKey: c.SecretKey,
		},
	}
	if c.TLSCert == "" {
		return cc, nil
	}
	var err error
	cc.ServerTLS, cc.ClientTLS, err = mutualTLS(c.TLSCert, c.TLSKey, c.TLSCA)
	return cc, err
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

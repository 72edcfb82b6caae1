// pemdecode: Go's encoding/pem.Decode and x509.ParseCertificateRequest as kube-apiserver and
// the controller-manager use them, for kubepki's parity tests (tests/pem_go.rs). Reads
// length-prefixed inputs (uint32 little endian) from the file named by its last argument.
//
// `pemdecode FILE` prints one line per input: each block Go's loop
// `for { b, rest = pem.Decode(rest) }` finds, as hex(type):has-headers:hex(bytes):offset of
// the rest, separated by ';'.
//
// `pemdecode csr FILE` parses each input as a DER certificate request and prints ERR, or
// OK|CN|O,..|DNS,..|IP,..|email,..|URI,..|signature, texts in hex, IPs as 16 bytes in hex.
//
// `pemdecode cert FILE`: each input is uint32 LE n, n bytes of an issuer certificate (n may be
// 0), then the certificate. Prints ERR, or what x509.ParseCertificate read (see cert below).
//
// `pemdecode key FILE`: each input is one label byte (0 RSA PRIVATE KEY, 1 EC PRIVATE KEY,
// 2 PRIVATE KEY) and DER, parsed as k8s.io/client-go's keyutil.ParsePrivateKeyPEM does by
// label (x509.ParsePKCS1PrivateKey, ParseECPrivateKey, ParsePKCS8PrivateKey). Prints ERR,
// OK|RSA|hex(N)|E or OK|EC|curve|hex(uncompressed public point).
package main

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
)

func hexes(xs []string) string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = hex.EncodeToString([]byte(x))
	}
	return strings.Join(out, ",")
}

// ipsAndURIs: IPs as 16 bytes in hex, URIs as Go writes them back.
func ipsAndURIs(ipList []net.IP, uriList []*url.URL) (ips, uris []string) {
	for _, ip := range ipList {
		ips = append(ips, hex.EncodeToString(ip.To16()))
	}
	for _, u := range uriList {
		uris = append(uris, u.String())
	}
	return ips, uris
}

func csr(buf []byte) string {
	req, err := x509.ParseCertificateRequest(buf)
	if err != nil {
		return "ERR"
	}
	ips, uris := ipsAndURIs(req.IPAddresses, req.URIs)
	sig := "sig-ok"
	if req.CheckSignature() != nil {
		sig = "sig-bad"
	}
	return fmt.Sprintf("OK|%s|%s|%s|%s|%s|%s|%s", hex.EncodeToString([]byte(req.Subject.CommonName)),
		hexes(req.Subject.Organization), hexes(req.DNSNames), strings.Join(ips, ","),
		hexes(req.EmailAddresses), hexes(uris), sig)
}

func keyType(pub any) string {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA-%d", k.N.BitLen())
	case *ecdsa.PublicKey:
		return "ECDSA-" + strings.ReplaceAll(k.Curve.Params().Name, "-", "")
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return "other"
}

// cert prints OK|subject DER|CN|O,..|issuer DER|serial|notBefore|notAfter|isCA|key usage|
// serverAuth,clientAuth,other|DNS,..|IP,..|email,..|URI,..|SKI|SPKI DER|key type|signature.
// Key usage is present,critical,digitalSignature,keyEncipherment,keyCertSign,other (0/1);
// SKI is - when absent; signature is sig-ok or sig-bad against the issuer (names equal and
// the signature verifies, SHA-1 and MD5 refused as CheckSignatureFrom refuses them), or
// no-issuer.
func cert(buf []byte) string {
	if len(buf) < 4 {
		return "ERR"
	}
	n := binary.LittleEndian.Uint32(buf)
	if uint32(len(buf)-4) < n {
		return "ERR"
	}
	issuerDER, der := buf[4:4+n], buf[4+n:]
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return "ERR"
	}
	b := func(v bool) string {
		if v {
			return "1"
		}
		return "0"
	}
	ku := "0,0,0,0,0,0"
	for _, e := range c.Extensions {
		if e.Id.String() == "2.5.29.15" {
			k := c.KeyUsage
			other := k&^(x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment|x509.KeyUsageCertSign) != 0
			ku = strings.Join([]string{"1", b(e.Critical), b(k&x509.KeyUsageDigitalSignature != 0),
				b(k&x509.KeyUsageKeyEncipherment != 0), b(k&x509.KeyUsageCertSign != 0), b(other)}, ",")
		}
	}
	var server, client, other bool
	for _, u := range c.ExtKeyUsage {
		switch u {
		case x509.ExtKeyUsageServerAuth:
			server = true
		case x509.ExtKeyUsageClientAuth:
			client = true
		default:
			other = true
		}
	}
	other = other || len(c.UnknownExtKeyUsage) > 0
	ips, uris := ipsAndURIs(c.IPAddresses, c.URIs)
	ski := "-"
	if c.SubjectKeyId != nil {
		ski = hex.EncodeToString(c.SubjectKeyId)
	}
	sig := "no-issuer"
	if len(issuerDER) > 0 {
		sig = "sig-bad"
		if issuer, err := x509.ParseCertificate(issuerDER); err == nil && bytes.Equal(c.RawIssuer, issuer.RawSubject) {
			switch c.SignatureAlgorithm {
			case x509.SHA1WithRSA, x509.ECDSAWithSHA1, x509.DSAWithSHA1, x509.MD5WithRSA, x509.MD2WithRSA:
			default:
				if issuer.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil {
					sig = "sig-ok"
				}
			}
		}
	}
	return strings.Join([]string{"OK", hex.EncodeToString(c.RawSubject), hex.EncodeToString([]byte(c.Subject.CommonName)),
		hexes(c.Subject.Organization), hex.EncodeToString(c.RawIssuer), c.SerialNumber.Text(16),
		fmt.Sprint(c.NotBefore.Unix()), fmt.Sprint(c.NotAfter.Unix()), b(c.IsCA), ku,
		b(server) + "," + b(client) + "," + b(other), hexes(c.DNSNames), strings.Join(ips, ","),
		hexes(c.EmailAddresses), hexes(uris), ski, hex.EncodeToString(c.RawSubjectPublicKeyInfo),
		keyType(c.PublicKey), sig}, "|")
}

func key(buf []byte) string {
	if len(buf) < 1 {
		return "ERR"
	}
	var k any
	var err error
	switch buf[0] {
	case 0:
		k, err = x509.ParsePKCS1PrivateKey(buf[1:])
	case 1:
		k, err = x509.ParseECPrivateKey(buf[1:])
	default:
		k, err = x509.ParsePKCS8PrivateKey(buf[1:])
	}
	if err != nil {
		return "ERR"
	}
	switch k := k.(type) {
	case *rsa.PrivateKey:
		return fmt.Sprintf("OK|RSA|%s|%d", hex.EncodeToString(k.N.Bytes()), k.E)
	case *ecdsa.PrivateKey:
		return fmt.Sprintf("OK|EC|%s|%s", k.Curve.Params().Name, hex.EncodeToString(elliptic.Marshal(k.Curve, k.X, k.Y)))
	}
	return "OK|other"
}

// guarded runs f, printing PANIC if Go's parser panics on the input (it then refuses it).
func guarded(f func([]byte) string, buf []byte) (out string) {
	defer func() {
		if recover() != nil {
			out = "PANIC"
		}
	}()
	return f(buf)
}

func main() {
	mode := ""
	if len(os.Args) > 2 {
		mode = os.Args[1]
	}
	f, err := os.Open(os.Args[len(os.Args)-1])
	if err != nil {
		panic(err)
	}
	r := bufio.NewReader(f)
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	for {
		var n uint32
		if err := binary.Read(r, binary.LittleEndian, &n); err != nil {
			return
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(r, buf); err != nil {
			panic(err)
		}
		switch mode {
		case "csr":
			fmt.Fprintln(w, csr(buf))
			continue
		case "cert":
			fmt.Fprintln(w, guarded(cert, buf))
			continue
		case "key":
			fmt.Fprintln(w, guarded(key, buf))
			continue
		}
		rest := buf
		for {
			b, r2 := pem.Decode(rest)
			if b == nil {
				break
			}
			headers := 0
			if len(b.Headers) > 0 {
				headers = 1
			}
			fmt.Fprintf(w, "%s:%d:%s:%d;", hex.EncodeToString([]byte(b.Type)), headers, hex.EncodeToString(b.Bytes), len(buf)-len(r2))
			rest = r2
		}
		fmt.Fprintln(w)
	}
}

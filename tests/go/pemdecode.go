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
package main

import (
	"bufio"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
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

func csr(buf []byte) string {
	req, err := x509.ParseCertificateRequest(buf)
	if err != nil {
		return "ERR"
	}
	ips := make([]string, len(req.IPAddresses))
	for i, ip := range req.IPAddresses {
		ips[i] = hex.EncodeToString(ip.To16())
	}
	uris := make([]string, len(req.URIs))
	for i, u := range req.URIs {
		uris[i] = u.String()
	}
	sig := "sig-ok"
	if req.CheckSignature() != nil {
		sig = "sig-bad"
	}
	return fmt.Sprintf("OK|%s|%s|%s|%s|%s|%s|%s", hex.EncodeToString([]byte(req.Subject.CommonName)),
		hexes(req.Subject.Organization), hexes(req.DNSNames), strings.Join(ips, ","),
		hexes(req.EmailAddresses), hexes(uris), sig)
}

func main() {
	csrMode := len(os.Args) > 2 && os.Args[1] == "csr"
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
		if csrMode {
			fmt.Fprintln(w, csr(buf))
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

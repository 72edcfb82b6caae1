// populate: the objects bench/audit.sh audits, created as fast as the API server takes them.
// Stdlib only (no module proxy here): many concurrent JSON POSTs over keep-alive HTTP/1.1
// connections with the admin client certificate. Prints one JSON line per phase.
//
//	populate -server https://IP:PORT -ca ca.crt -cert admin.crt -key admin.key \
//	         -nodes 5000 -pods 150000 [-namespaces 100] [-conc 64] [-pods-per-rs 20]
//
// What it makes (deterministic, from the indexes):
//   - namespaces app-000..: a mix of pod-security.kubernetes.io labels (none, enforce=privileged,
//     baseline, baseline+warn/audit=restricted, restricted, baseline pinned to v1.20), each with
//     its `default` ServiceAccount (no controller-manager runs to make it; pods set
//     automountServiceAccountToken: false, so no token Secret is needed); `monitoring`;
//   - Nodes node-00000..: zone labels over 3 zones, nodes 0-2 control plane (role label + taint),
//     status with capacity (pods 110), allocatable, conditions, addresses, nodeInfo, 8 images;
//   - workloads: DaemonSets kube-proxy (no resources) and node-exporter; Deployment coredns;
//     one Deployment per app of the app pods (replicas = its pods; half spread over zones);
//     one 3-replica StatefulSet per namespace; PersistentVolumes (2 of 3 with a zone);
//   - Pods: pod i runs on node i%nodes, its slot on the node is i/nodes: slot 0 kube-proxy
//     (hostNetwork, privileged), slot 1 node-exporter (hostNetwork, hostPID, hostPath), slots
//     2-5 on nodes 0-2 the static control-plane pods (kube-apiserver, etcd, controller-manager,
//     scheduler; owned by their Node), the rest app pods: -pods-per-rs pods per fake ReplicaSet
//     (ownerReference controller=true, arbitrary uid; nothing garbage-collects them), every
//     tenth app bare; 1-2 containers with requests/limits; security contexts per app: 50%
//     restricted-compliant, 35% unset (baseline), 5% privileged, 5% hostPath + NET_ADMIN,
//     5% root with privilege escalation.
package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

type M = map[string]any
type L = []any

var (
	server    = flag.String("server", "", "https://IP:PORT")
	caFile    = flag.String("ca", "", "CA bundle")
	certFile  = flag.String("cert", "", "client certificate")
	keyFile   = flag.String("key", "", "client key")
	nodes     = flag.Int("nodes", 5000, "Nodes")
	pods      = flag.Int("pods", 150000, "Pods")
	nss       = flag.Int("namespaces", 100, "app namespaces")
	conc      = flag.Int("conc", 64, "requests in flight")
	podsPerRS = flag.Int("pods-per-rs", 20, "app pods per ReplicaSet")
	only      = flag.String("only", "", "run one phase: namespaces, nodes, workloads, pods")
)

var client *http.Client

type req struct {
	path string
	body []byte
}

type result struct {
	Phase   string  `json:"phase"`
	Objects int64   `json:"objects"`
	Seconds float64 `json:"seconds"`
	PerS    float64 `json:"per_s"`
	Retries int64   `json:"retries"`
	Exists  int64   `json:"already_existed"`
	Failed  int64   `json:"failed"`
	MiB     float64 `json:"request_mib"`
	Errors  []string `json:"first_errors,omitempty"`
}

// run POSTs everything gen yields, conc at a time, retrying 429/5xx/transport errors.
func run(phase string, gen func(emit func(path string, obj M))) result {
	ch := make(chan req, *conc*4)
	var ok, retries, exists, failed, bytesSent int64
	var errMu sync.Mutex
	var errs []string
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < *conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range ch {
				var last string
				done := false
				for attempt := 0; attempt < 12 && !done; attempt++ {
					if attempt > 0 {
						atomic.AddInt64(&retries, 1)
						time.Sleep(time.Duration(50<<min(attempt, 6)) * time.Millisecond)
					}
					resp, err := client.Post(*server+r.path, "application/json", bytes.NewReader(r.body))
					if err != nil {
						last = err.Error()
						continue
					}
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					switch {
					case resp.StatusCode == 201 || resp.StatusCode == 200:
						atomic.AddInt64(&ok, 1)
						done = true
					case resp.StatusCode == 409:
						atomic.AddInt64(&exists, 1)
						done = true
					case resp.StatusCode == 429 || resp.StatusCode >= 500:
						last = fmt.Sprintf("%d %s", resp.StatusCode, trunc(body))
					default:
						last = fmt.Sprintf("%d %s", resp.StatusCode, trunc(body))
						attempt = 99
					}
				}
				if !done {
					atomic.AddInt64(&failed, 1)
					errMu.Lock()
					if len(errs) < 5 {
						errs = append(errs, r.path+": "+last)
					}
					errMu.Unlock()
				}
				atomic.AddInt64(&bytesSent, int64(len(r.body)))
			}
		}()
	}
	gen(func(path string, obj M) {
		b, err := json.Marshal(obj)
		if err != nil {
			panic(err)
		}
		ch <- req{path, b}
	})
	close(ch)
	wg.Wait()
	secs := time.Since(start).Seconds()
	n := ok + exists
	res := result{phase, n, round(secs), round(float64(n) / secs), retries, exists, failed,
		round(float64(bytesSent) / (1 << 20)), errs}
	out, _ := json.Marshal(res)
	fmt.Println(string(out))
	return res
}

func trunc(b []byte) string {
	if len(b) > 300 {
		b = b[:300]
	}
	return string(b)
}
func round(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }
func min(a, b int) int {
	if a < b {
		return a
	}
	return b
}

var zones = []string{"zone-a", "zone-b", "zone-c"}

func nodeName(n int) string { return fmt.Sprintf("node-%05d", n) }
func nsName(m int) string   { return fmt.Sprintf("app-%03d", m) }

// The pod-security labels of app namespace m.
func nsLabels(m int) M {
	l := M{"kubernetes.io/metadata.name": nsName(m), "team": fmt.Sprintf("team-%d", m%17)}
	p := "pod-security.kubernetes.io/"
	switch m % 6 {
	case 1:
		l[p+"enforce"] = "privileged"
	case 2:
		l[p+"enforce"] = "baseline"
	case 3:
		l[p+"enforce"] = "baseline"
		l[p+"warn"] = "restricted"
		l[p+"audit"] = "restricted"
	case 4:
		l[p+"enforce"] = "restricted"
	case 5:
		l[p+"enforce"] = "baseline"
		l[p+"enforce-version"] = "v1.20"
	}
	return l
}

func namespaces(emit func(string, M)) {
	mk := func(name string, labels M) {
		emit("/api/v1/namespaces", M{"metadata": M{"name": name, "labels": labels}})
	}
	mk("monitoring", M{"pod-security.kubernetes.io/enforce": "privileged"})
	for m := 0; m < *nss; m++ {
		mk(nsName(m), nsLabels(m))
	}
}

func serviceAccounts(emit func(string, M)) {
	all := []string{"kube-system", "monitoring"}
	for m := 0; m < *nss; m++ {
		all = append(all, nsName(m))
	}
	for _, ns := range all {
		emit("/api/v1/namespaces/"+ns+"/serviceaccounts",
			M{"metadata": M{"name": "default"}, "automountServiceAccountToken": false})
	}
}

var t0 = time.Now().UTC().Format(time.RFC3339)

func node(n int) M {
	name := nodeName(n)
	zone := zones[n%3]
	labels := M{
		"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
		"beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64",
		"topology.kubernetes.io/zone": zone, "topology.kubernetes.io/region": "region-1",
		"failure-domain.beta.kubernetes.io/zone": zone, "failure-domain.beta.kubernetes.io/region": "region-1",
		"node.kubernetes.io/instance-type": "m5.2xlarge", "pool": fmt.Sprintf("pool-%d", n%7),
	}
	spec := M{"podCIDR": fmt.Sprintf("10.%d.%d.0/24", 64+n/256, n%256), "providerID": "bench://" + name}
	if n < 3 {
		labels["node-role.kubernetes.io/control-plane"] = ""
		labels["node-role.kubernetes.io/master"] = ""
		spec["taints"] = L{M{"key": "node-role.kubernetes.io/master", "effect": "NoSchedule"}}
	}
	ip := fmt.Sprintf("10.%d.%d.%d", 1+n/65536, (n/256)%256, n%256)
	res := M{"cpu": "8", "memory": "32779508Ki", "pods": "110", "ephemeral-storage": "101445540Ki",
		"hugepages-1Gi": "0", "hugepages-2Mi": "0"}
	alloc := M{"cpu": "7800m", "memory": "31628532Ki", "pods": "110", "ephemeral-storage": "93492209510",
		"hugepages-1Gi": "0", "hugepages-2Mi": "0"}
	cond := func(t, s, reason, msg string) M {
		return M{"type": t, "status": s, "reason": reason, "message": msg,
			"lastHeartbeatTime": t0, "lastTransitionTime": t0}
	}
	var images L
	for i, img := range []string{"k8s.gcr.io/kube-proxy:v1.20.2", "quay.io/prometheus/node-exporter:v1.1.2",
		"k8s.gcr.io/pause:3.2", "registry.example/team/app:1.4.2", "registry.example/team/sidecar:0.9.1",
		"docker.io/library/nginx:1.19", "docker.io/library/redis:6.0", "k8s.gcr.io/coredns:1.7.0"} {
		images = append(images, M{"names": L{img, img + "@sha256:" + fmt.Sprintf("%064x", i*7919+n)},
			"sizeBytes": 10_000_000 + i*3_000_000})
	}
	return M{"metadata": M{"name": name, "labels": labels, "annotations": M{
		"node.alpha.kubernetes.io/ttl": "0", "volumes.kubernetes.io/controller-managed-attach-detach": "true"}},
		"spec": spec,
		"status": M{
			"capacity": res, "allocatable": alloc,
			"conditions": L{
				cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
				cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
				cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
				cond("Ready", "True", "KubeletReady", "kubelet is posting ready status")},
			"addresses":       L{M{"type": "InternalIP", "address": ip}, M{"type": "Hostname", "address": name}},
			"daemonEndpoints": M{"kubeletEndpoint": M{"Port": 10250}},
			"nodeInfo": M{"machineID": fmt.Sprintf("%032x", n), "systemUUID": fmt.Sprintf("%08x-0000-0000-0000-000000000000", n),
				"bootID": fmt.Sprintf("%08x-1111-1111-1111-111111111111", n), "kernelVersion": "5.10.0-19-amd64",
				"osImage": "Debian GNU/Linux 11 (bullseye)", "containerRuntimeVersion": "containerd://1.4.13",
				"kubeletVersion": "v1.20.2", "kubeProxyVersion": "v1.20.2", "operatingSystem": "linux", "architecture": "amd64"},
			"images": images,
		}}
}

func nodesPhase(emit func(string, M)) {
	for n := 0; n < *nodes; n++ {
		emit("/api/v1/nodes", node(n))
	}
}

// App pods are numbered k = 0.. in creation order; app k's namespace is k % nss, its rank in
// the namespace q = k / nss, its ReplicaSet q / podsPerRS.
type app struct {
	ns, name, hash string
	bare           bool
	profile        int // 0-9 restricted, 10-16 unset, 17 privileged, 18 hostPath+NET_ADMIN, 19 root+escalation
	sidecar        bool
}

func appOf(k int) (app, int) {
	m := k % *nss
	q := k / *nss
	rs := q / *podsPerRS
	h := (m*7919 + rs*104729) % 1000003
	a := app{ns: nsName(m), name: fmt.Sprintf("svc-%04d", rs), hash: fmt.Sprintf("%08x", h*2654435761%4294967291),
		bare: rs%10 == 9, profile: h % 20, sidecar: h%5 < 2}
	return a, q % *podsPerRS
}

// How many app pods the pod numbering yields (slots >= 2, minus the control-plane pods).
func appPods() int {
	n := 0
	for i := 0; i < *pods; i++ {
		if isApp(i) {
			n++
		}
	}
	return n
}

func isApp(i int) bool {
	node, slot := i%*nodes, i / *nodes
	return slot >= 2 && !(node < 3 && slot <= 5)
}

func restricted() M {
	return M{"allowPrivilegeEscalation": false, "runAsNonRoot": true, "runAsUser": 10001,
		"capabilities": M{"drop": L{"ALL"}}, "seccompProfile": M{"type": "RuntimeDefault"}, "readOnlyRootFilesystem": true}
}

func container(name, image string, port int, profile int) M {
	c := M{"name": name, "image": image, "imagePullPolicy": "IfNotPresent",
		"ports": L{M{"name": "http", "containerPort": port, "protocol": "TCP"}},
		"env": L{M{"name": "LOG_LEVEL", "value": "info"}, M{"name": "POD_NAME", "valueFrom": M{"fieldRef": M{"fieldPath": "metadata.name"}}},
			M{"name": "GOMAXPROCS", "value": "2"}},
		"resources": M{"requests": M{"cpu": "100m", "memory": "128Mi"}, "limits": M{"cpu": "500m", "memory": "256Mi"}},
		"readinessProbe": M{"httpGet": M{"path": "/healthz", "port": port}, "periodSeconds": 10},
		"volumeMounts":   L{M{"name": "config", "mountPath": "/etc/" + name}, M{"name": "tmp", "mountPath": "/tmp"}},
		"terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"}
	switch {
	case profile < 10:
		c["securityContext"] = restricted()
	case profile == 17:
		c["securityContext"] = M{"privileged": true}
	case profile == 18:
		c["securityContext"] = M{"capabilities": M{"add": L{"NET_ADMIN", "NET_RAW"}}}
		c["volumeMounts"] = append(c["volumeMounts"].(L), M{"name": "host", "mountPath": "/host", "readOnly": true})
	case profile == 19:
		c["securityContext"] = M{"runAsUser": 0, "allowPrivilegeEscalation": true}
	}
	return c
}

func podTemplate(a app) (M, M) {
	labels := M{"app.kubernetes.io/name": a.name, "app.kubernetes.io/part-of": a.ns, "tier": []string{"web", "api", "worker"}[a.profile%3]}
	if !a.bare {
		labels["pod-template-hash"] = a.hash[:8]
	}
	containers := L{container("app", "registry.example/team/"+a.name+":1.4.2", 8080, a.profile)}
	if a.sidecar {
		containers = append(containers, container("proxy", "registry.example/team/sidecar:0.9.1", 15001, a.profile))
	}
	vols := L{M{"name": "config", "configMap": M{"name": a.name + "-config", "defaultMode": 420}},
		M{"name": "tmp", "emptyDir": M{"sizeLimit": "64Mi"}}}
	if a.profile == 18 {
		vols = append(vols, M{"name": "host", "hostPath": M{"path": "/var/log", "type": "Directory"}})
	}
	spec := M{"containers": containers, "volumes": vols, "restartPolicy": "Always",
		"terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst", "serviceAccountName": "default",
		"automountServiceAccountToken": false, "schedulerName": "default-scheduler", "priority": 0,
		"enableServiceLinks": false}
	if a.profile < 10 {
		spec["securityContext"] = M{"runAsNonRoot": true, "seccompProfile": M{"type": "RuntimeDefault"}, "fsGroup": 10001}
	}
	return labels, spec
}

func dsPod(slot, node int) (string, M) {
	nn := nodeName(node)
	if slot == 0 {
		return "kube-system", M{"metadata": M{"name": "kube-proxy-" + fmt.Sprintf("%05x", node*31337%1048576),
			"labels":          M{"k8s-app": "kube-proxy", "controller-revision-hash": "6b9f7d5c8", "pod-template-generation": "1"},
			"ownerReferences": L{M{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "kube-proxy", "uid": "00000000-0000-0000-0000-00000000d500", "controller": true, "blockOwnerDeletion": true}}},
			"spec": M{"nodeName": nn, "hostNetwork": true, "priorityClassName": "system-node-critical", "automountServiceAccountToken": false,
				"containers": L{M{"name": "kube-proxy", "image": "k8s.gcr.io/kube-proxy:v1.20.2",
					"command":         L{"/usr/local/bin/kube-proxy", "--config=/var/lib/kube-proxy/config.conf", "--hostname-override=$(NODE_NAME)"},
					"securityContext": M{"privileged": true},
					"volumeMounts":    L{M{"name": "kube-proxy", "mountPath": "/var/lib/kube-proxy"}, M{"name": "xtables-lock", "mountPath": "/run/xtables.lock"}, M{"name": "lib-modules", "mountPath": "/lib/modules", "readOnly": true}}}},
				"volumes": L{M{"name": "kube-proxy", "configMap": M{"name": "kube-proxy"}},
					M{"name": "xtables-lock", "hostPath": M{"path": "/run/xtables.lock", "type": "FileOrCreate"}},
					M{"name": "lib-modules", "hostPath": M{"path": "/lib/modules"}}},
				"tolerations": L{M{"operator": "Exists"}}}}
	}
	return "monitoring", M{"metadata": M{"name": "node-exporter-" + fmt.Sprintf("%05x", node*7177%1048576),
		"labels":          M{"app": "node-exporter", "controller-revision-hash": "7c8d9f6b4", "pod-template-generation": "1"},
		"ownerReferences": L{M{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "node-exporter", "uid": "00000000-0000-0000-0000-00000000d501", "controller": true, "blockOwnerDeletion": true}}},
		"spec": M{"nodeName": nn, "hostNetwork": true, "hostPID": true, "automountServiceAccountToken": false,
			"securityContext": M{"runAsNonRoot": true, "runAsUser": 65534},
			"containers": L{M{"name": "node-exporter", "image": "quay.io/prometheus/node-exporter:v1.1.2",
				"args":         L{"--path.procfs=/host/proc", "--path.sysfs=/host/sys"},
				"resources":    M{"requests": M{"cpu": "50m", "memory": "30Mi"}, "limits": M{"cpu": "250m", "memory": "180Mi"}},
				"volumeMounts": L{M{"name": "proc", "mountPath": "/host/proc", "readOnly": true}, M{"name": "sys", "mountPath": "/host/sys", "readOnly": true}}}},
			"volumes":     L{M{"name": "proc", "hostPath": M{"path": "/proc"}}, M{"name": "sys", "hostPath": M{"path": "/sys"}}},
			"tolerations": L{M{"operator": "Exists"}}}}
}

func staticPod(slot, node int) M {
	comp := []string{"kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler"}[slot-2]
	nn := nodeName(node)
	return M{"metadata": M{"name": comp + "-" + nn, "labels": M{"component": comp, "tier": "control-plane"},
		"annotations":     M{"kubernetes.io/config.source": "file"},
		"ownerReferences": L{M{"apiVersion": "v1", "kind": "Node", "name": nn, "uid": fmt.Sprintf("00000000-0000-0000-0000-%012x", node), "controller": true}}},
		"spec": M{"nodeName": nn, "hostNetwork": true, "priorityClassName": "system-node-critical", "automountServiceAccountToken": false,
			"containers": L{M{"name": comp, "image": "k8s.gcr.io/" + comp + ":v1.20.2",
				"resources":    M{"requests": M{"cpu": "250m"}},
				"volumeMounts": L{M{"name": "k8s-certs", "mountPath": "/etc/kubernetes/pki", "readOnly": true}}}},
			"volumes":     L{M{"name": "k8s-certs", "hostPath": M{"path": "/etc/kubernetes/pki", "type": "DirectoryOrCreate"}}},
			"tolerations": L{M{"operator": "Exists", "effect": "NoExecute"}}}}
}

func podsPhase(emit func(string, M)) {
	k := 0
	for i := 0; i < *pods; i++ {
		node, slot := i%*nodes, i / *nodes
		if !isApp(i) {
			if slot <= 1 {
				ns, p := dsPod(slot, node)
				emit("/api/v1/namespaces/"+ns+"/pods", p)
			} else {
				emit("/api/v1/namespaces/kube-system/pods", staticPod(slot, node))
			}
			continue
		}
		a, idx := appOf(k)
		k++
		labels, spec := podTemplate(a)
		spec["nodeName"] = nodeName(node)
		meta := M{"labels": labels}
		if a.bare {
			meta["name"] = fmt.Sprintf("%s-run-%d", a.name, idx)
		} else {
			rs := a.name + "-" + a.hash[:8]
			meta["name"] = fmt.Sprintf("%s-%05x", rs, k)
			meta["ownerReferences"] = L{M{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs,
				"uid": "00000000-0000-0000-0001-" + fmt.Sprintf("%012x", k / *podsPerRS), "controller": true, "blockOwnerDeletion": true}}
		}
		emit("/api/v1/namespaces/"+a.ns+"/pods", M{"metadata": meta, "spec": spec})
	}
}

func workloads(emit func(string, M)) {
	ds := func(ns, name string, resources bool) {
		c := M{"name": name, "image": "k8s.gcr.io/" + name + ":v1.20.2"}
		if resources {
			c["resources"] = M{"requests": M{"cpu": "50m", "memory": "30Mi"}, "limits": M{"cpu": "250m", "memory": "180Mi"}}
		}
		sel := M{"matchLabels": M{"app": name}}
		emit("/apis/apps/v1/namespaces/"+ns+"/daemonsets", M{"metadata": M{"name": name},
			"spec": M{"selector": sel, "template": M{"metadata": M{"labels": M{"app": name}}, "spec": M{"containers": L{c}, "hostNetwork": true}}}})
	}
	ds("kube-system", "kube-proxy", false)
	ds("monitoring", "node-exporter", true)
	emit("/apis/apps/v1/namespaces/kube-system/deployments", M{"metadata": M{"name": "coredns"},
		"spec": M{"replicas": 2, "selector": M{"matchLabels": M{"k8s-app": "kube-dns"}},
			"template": M{"metadata": M{"labels": M{"k8s-app": "kube-dns"}}, "spec": M{"containers": L{M{"name": "coredns",
				"image": "k8s.gcr.io/coredns:1.7.0", "resources": M{"requests": M{"cpu": "100m", "memory": "70Mi"}, "limits": M{"memory": "170Mi"}}}}}}}})
	// One Deployment per app that has pods, with as many replicas as it has pods.
	seen := map[string]int{}
	var order []app
	for k, n := 0, appPods(); k < n; k++ {
		a, _ := appOf(k)
		key := a.ns + "/" + a.name
		if _, ok := seen[key]; !ok {
			order = append(order, a)
		}
		seen[key]++
	}
	for _, a := range order {
		if a.bare {
			continue
		}
		labels, spec := podTemplate(a)
		delete(labels, "pod-template-hash")
		if a.profile%2 == 0 {
			spec["topologySpreadConstraints"] = L{M{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
				"whenUnsatisfiable": "ScheduleAnyway", "labelSelector": M{"matchLabels": M{"app.kubernetes.io/name": a.name}}}}
		}
		emit("/apis/apps/v1/namespaces/"+a.ns+"/deployments", M{"metadata": M{"name": a.name, "labels": labels},
			"spec": M{"replicas": seen[a.ns+"/"+a.name], "selector": M{"matchLabels": M{"app.kubernetes.io/name": a.name}},
				"template": M{"metadata": M{"labels": labels}, "spec": spec}}})
	}
	for m := 0; m < *nss; m++ {
		labels := M{"app": "db"}
		emit("/apis/apps/v1/namespaces/"+nsName(m)+"/statefulsets", M{"metadata": M{"name": "db"},
			"spec": M{"replicas": 3, "serviceName": "db", "selector": M{"matchLabels": labels},
				"template": M{"metadata": M{"labels": labels}, "spec": M{"containers": L{M{"name": "db", "image": "docker.io/library/redis:6.0"}}}}}})
	}
	for v := 0; v < 3**nss; v++ {
		pv := M{"metadata": M{"name": fmt.Sprintf("pv-%04d", v)},
			"spec": M{"capacity": M{"storage": "10Gi"}, "accessModes": L{"ReadWriteOnce"}, "persistentVolumeReclaimPolicy": "Retain",
				"csi": M{"driver": "ebs.csi.aws.com", "volumeHandle": fmt.Sprintf("vol-%08x", v)}}}
		if v%3 != 0 {
			z := zones[v%3]
			pv["metadata"].(M)["labels"] = M{"topology.kubernetes.io/zone": z}
			pv["spec"].(M)["nodeAffinity"] = M{"required": M{"nodeSelectorTerms": L{M{"matchExpressions": L{
				M{"key": "topology.kubernetes.io/zone", "operator": "In", "values": L{z}}}}}}}
		}
		emit("/api/v1/persistentvolumes", pv)
	}
}

func main() {
	flag.Parse()
	ca, err := os.ReadFile(*caFile)
	must(err)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	must(err)
	client = &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}},
		MaxIdleConns:        *conc * 2,
		MaxIdleConnsPerHost: *conc * 2,
		MaxConnsPerHost:     *conc,
	}}
	failed := int64(0)
	phase := func(name string, f func(func(string, M))) {
		if *only == "" || *only == name {
			failed += run(name, f).Failed
		}
	}
	phase("namespaces", namespaces)
	phase("serviceaccounts", serviceAccounts)
	phase("nodes", nodesPhase)
	phase("workloads", workloads)
	phase("pods", podsPhase)
	if failed > 0 {
		os.Exit(1)
	}
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
}

// Command argocd is Argo CD's multi-call binary cut down to the components the gitops tests run as
// host processes: the application-controller, the repo-server and the git ask-pass helper. Each
// subcommand is upstream's own cobra command at the pinned version; only the set is smaller than
// upstream's cmd/main.go (github.com/argoproj/argo-cd/v3 cmd/main.go, which this follows), which
// also links the API server, the UI, dex, the ApplicationSet controller's SCM SDKs and the
// notifications engine, none of which the tests use. The component is chosen as upstream does: by
// ARGOCD_BINARY_NAME, else by the name the binary was invoked as.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	appcontroller "github.com/argoproj/argo-cd/v3/cmd/argocd-application-controller/commands"
	gitaskpass "github.com/argoproj/argo-cd/v3/cmd/argocd-git-ask-pass/commands"
	reposerver "github.com/argoproj/argo-cd/v3/cmd/argocd-repo-server/commands"
	"github.com/argoproj/argo-cd/v3/common"
	"github.com/argoproj/argo-cd/v3/util/log"
)

func init() {
	klog.SetLogger(log.NewLogrusLogger(log.NewWithCurrentConfig()))
}

func main() {
	// Upstream's main calls grpc.DisableSRVLookups() (util/grpc/srvworkaround.go), which panics unless
	// grpc's gRPCLB balancer turned SRV lookups on; this binary does not link gRPCLB, so they are off.
	name := filepath.Base(os.Args[0])
	if v := os.Getenv("ARGOCD_BINARY_NAME"); v != "" {
		name = v
	}
	var command *cobra.Command
	switch name {
	case common.CommandApplicationController:
		command = appcontroller.NewCommand()
	case common.CommandRepoServer:
		command = reposerver.NewCommand()
	case common.CommandGitAskPass:
		command = gitaskpass.NewCommand()
	default:
		fmt.Fprintf(os.Stderr, "argocd (gonka-operator test build): set ARGOCD_BINARY_NAME to %s, %s or %s\n",
			common.CommandApplicationController, common.CommandRepoServer, common.CommandGitAskPass)
		os.Exit(2)
	}
	if err := command.Execute(); err != nil {
		os.Exit(1)
	}
}

"""gonka-operator: run Gonka hosts on Kubernetes."""

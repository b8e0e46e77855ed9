from trioflow.deploy.adaptive import Adaptive
from trioflow.deploy.local import LocalCluster
from trioflow.deploy.spec import ProcessInterface, SpecCluster, Status
from trioflow.deploy.ssh import SSHCluster

__all__ = ["Adaptive", "LocalCluster", "ProcessInterface", "SpecCluster", "SSHCluster", "Status"]

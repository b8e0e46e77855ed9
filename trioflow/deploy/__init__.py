from trioflow.deploy.local import LocalCluster

__all__ = ["LocalCluster"]

"""The ``--ray`` and ``--plan`` options of ``avlm caption``, ``avlm ask --questions`` and ``avlm eval``, named as Ray
Data names them. argparse only, so that ``--help`` imports neither Ray nor torch; what they do at run time is in
:mod:`avlm.scale.options` (Ray is an optional extra: ``pip install "avlm[ray]"``)."""

from __future__ import annotations

import argparse


def add_ray_arguments(parser: argparse.ArgumentParser) -> None:
    """``--ray`` with the cluster, replica and decode-pool options, and ``--plan`` with the cluster size."""
    ray = parser.add_argument_group("cluster (Ray Data; needs pip install \"avlm[ray]\")")
    ray.add_argument("--ray", action="store_true",
                     help="run on Ray Data: decode tasks on CPU workers feed an actor pool of model replicas; the "
                          "output file, its resume rule and --retry-errors are the same")
    ray.add_argument("--ray-address", default=None, metavar="ADDRESS",
                     help="cluster to join: auto (a running one on this machine or $RAY_ADDRESS), HOST:PORT or "
                          "ray://HOST:PORT (default: start a local cluster here, unless $RAY_ADDRESS is set)")
    ray.add_argument("--concurrency", "--num-replicas", type=int, default=None, metavar="N",
                     help="model replicas, the actor pool's size (default: the cluster's GPUs / --num-gpus, or 1 "
                          "without GPUs)")
    ray.add_argument("--num-gpus", type=float, default=None, metavar="G",
                     help="GPUs per replica (default: 1 when the cluster has GPUs, else 0: replicas on CPU)")
    ray.add_argument("--num-cpus", type=float, default=None, metavar="C",
                     help="CPUs per replica (default 1; on CPU also its torch threads)")
    ray.add_argument("--decode-concurrency", type=int, default=None, metavar="N",
                     help="decode tasks at once, one CPU each (default: as many as the free CPUs allow)")
    ray.add_argument("--max-retries", type=int, default=None, metavar="N",
                     help="times a clip whose decoding kills its worker (a native crash) is retried before it "
                          "becomes an error line (default 3)")
    plan = parser.add_argument_group("planning a cluster run")
    plan.add_argument("--plan", action="store_true",
                      help="measure decode s/clip on one CPU and model s/batch on --device for a sample of the inputs "
                           "still to do, print the projected clips/hour and the CPU:GPU ratio, and stop")
    plan.add_argument("--plan-sample", type=int, default=8, metavar="N", help="inputs to measure (default 8)")
    plan.add_argument("--plan-gpus", type=int, default=8, metavar="N", help="cluster size in GPUs (default 8)")
    plan.add_argument("--plan-cpus", type=int, default=None, metavar="N",
                      help="cluster CPUs (default: as many as keep the GPUs busy)")

"""Which legs a route to a board has, read from ~/.ssh/config and the inventory as OpenSSH would; nothing is
connected here (tests/faults/test_jump_hosts.py drives real jump hosts and a real board)."""

import os
import time

import pytest
from fabric import Config

from harness.core.endpoint import JumpHost, SshEndpoint
from harness.core.errors import BoardError
from harness.execution.targets.route import ProxyProcess, plan_route

SSH_CONFIG = """\
Host a
  HostName 10.0.0.1
  Port 2201
  User ua
Host b
  HostName 10.0.0.2
  User ub
  ProxyJump ignored-for-a-later-hop
  UserKnownHostsFile {b_known_hosts}
Host z
  HostName 10.0.0.9
  ProxyCommand nc -x proxy:1080 %h %p
Host a-behind-z
  HostName 10.0.0.1
  ProxyJump z
Host board
  HostName 192.168.7.2
  User root
  ProxyJump a,b
Host board-behind-chain
  HostName 192.168.7.3
  ProxyJump a-behind-z,b
Host loop-a
  ProxyJump loop-b
Host loop-b
  ProxyJump loop-a
Host loops
  ProxyJump loop-a
Host straight
  ProxyJump none
"""


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "ssh_config"
    path.write_text(SSH_CONFIG.format(b_known_hosts=tmp_path / "b_known_hosts"))
    return Config(runtime_ssh_path=str(path))


def route(config, host, **endpoint):
    return plan_route("board", SshEndpoint(host=host, **endpoint), None, 15.0, config=config)


def addresses(route):
    return [(leg.connection.host, leg.connection.port, leg.connection.user) for leg in route.legs]


def test_proxyjump_hosts_are_visited_in_the_order_written_each_as_its_host_entry_says(config):
    planned = route(config, "board")
    assert planned.via == ["a", "b"]
    # fabric's own gateway would open b first; OpenSSH (and we) open a, then b through a, then the board.
    assert addresses(planned)[:2] == [("10.0.0.1", 2201, "ua"), ("10.0.0.2", 22, "ub")]
    assert addresses(planned)[2][:2] == ("192.168.7.2", 22)
    assert [leg.jump for leg in planned.legs] == [True, True, False]
    assert planned.proxy_command is None


def test_the_first_hop_is_reached_as_its_own_entry_says_its_proxycommand_too(config):
    planned = route(config, "board-behind-chain")
    assert planned.via == ["ProxyCommand", "z", "a-behind-z", "b"]
    assert planned.proxy_command == "nc -x proxy:1080 10.0.0.9 22"  # %h and %p of the host it carries


def test_the_inventory_jump_key_takes_the_place_of_proxyjump_and_none_goes_straight(config):
    planned = route(config, "board", jump=(JumpHost("10.1.1.1", 2222, "lab", known_hosts="/lab/known_hosts"),))
    assert planned.via == ["lab@10.1.1.1:2222"]
    assert addresses(planned)[0] == ("10.1.1.1", 2222, "lab")
    assert "`jump:`" in planned.legs[0].settings
    assert route(config, "board", jump=()).via == []
    assert route(config, "straight").via == []
    assert plan_route("board", SshEndpoint(host="board"), None, 15.0, straight=True, config=config).via == []


def test_every_leg_has_its_own_known_hosts_files(config, tmp_path):
    planned = route(config, "board", known_hosts="/lab/boards_known_hosts")
    a, b, board = planned.legs
    # The board's own file may hold its jump hosts' keys too (a lab keeps one file).
    assert [str(path) for path in a.known_hosts] == ["/lab/boards_known_hosts"]
    assert [str(path) for path in b.known_hosts] == ["/lab/boards_known_hosts", str(tmp_path / "b_known_hosts")]
    assert [str(path) for path in board.known_hosts] == ["/lab/boards_known_hosts"]


def test_a_proxyjump_loop_is_a_clear_error(config):
    with pytest.raises(BoardError, match="goes round in a loop .*loop-a -> loop-b -> loop-a"):
        route(config, "loops")


def test_the_fix_for_an_unknown_host_key_runs_where_that_host_can_be_reached(config):
    planned = route(config, "board")
    assert planned.keyscan(0) == "`ssh-keyscan -p 2201 10.0.0.1 >> ~/.ssh/known_hosts`"
    assert "`ssh -J a,b -p 22 root@192.168.7.2 true`" in planned.keyscan(2)
    behind_proxy = route(config, "board-behind-chain")
    assert "cannot pass through the ProxyCommand" in behind_proxy.keyscan(0)


def test_a_proxy_process_runs_apart_from_our_process_group_and_its_end_ends_the_stream():
    # As ssh does, the command is exec'd by /bin/sh: a list of commands needs a shell of its own.
    proxy = ProxyProcess("""sh -c "printf SSH-2.0-x; echo 'no route to lab' >&2; exit 5" """)
    try:
        proxy.settimeout(5.0)
        # Ctrl-C at a terminal signals our process group: the proxy is not in it.
        assert os.getpgid(proxy.process.pid) != os.getpgrp()
        assert proxy.recv(64) == b"SSH-2.0-x"
        started = time.monotonic()
        assert proxy.recv(64) == b""  # the end of its output, at once: paramiko's own spins until a timeout
        assert time.monotonic() - started < 1.0
        proxy.process.wait(timeout=5)
        time.sleep(0.1)  # its stderr is read by a thread
        assert proxy.ended() == "exit 5: no route to lab"
    finally:
        proxy.close()

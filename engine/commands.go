package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rollbridge/rollbridge/engine/control"
	"github.com/rollbridge/rollbridge/jsconfig"
)

// HandleControl answers one control request (docs/cli.md#control-protocol).
// Mutating commands take the operation lock; status and events never wait.
func (e *Engine) HandleControl(ctx context.Context, req *control.Request, conn *control.Conn) ([]byte, error) {
	switch req.Command {
	case "status":
		return e.statusJSON()
	case "events":
		limit, limited := req.Number("limit")
		return e.eventsJSON(limit, limited)
	case "operations":
		return e.operationsJSON()
	case "traffic":
		return e.trafficReply()
	case "pause":
		return e.handlePause(req)
	case "resume":
		return e.handleResume()
	case "maintenance":
		return e.handleMaintenance(req)
	case "deploy":
		path, err := req.RequiredString("releasePath")
		if err != nil {
			return nil, err
		}
		id, _, err := req.OptionalString("releaseId")
		if err != nil {
			return nil, err
		}
		revision, revisionSet, err := req.OptionalString("revision")
		if err != nil {
			return nil, err
		}
		dreq := DeployRequest{ReleasePath: path, ReleaseID: id, Revision: revision, RevisionSet: revisionSet}
		if err := holdFields(req, &dreq); err != nil {
			return nil, err
		}
		return e.locked(conn, req.Command, dreq.namedID(), func() ([]byte, error) {
			return deployReply(e.deploy(dreq))
		})
	case "stop":
		id, _, err := req.OptionalString("releaseId")
		if err != nil {
			return nil, err
		}
		return e.locked(conn, req.Command, id, func() ([]byte, error) {
			if err := e.stopRelease(id); err != nil {
				return nil, err
			}
			return e.statusJSON()
		})
	case "rollback":
		id, _, err := req.OptionalString("releaseId")
		if err != nil {
			return nil, err
		}
		return e.locked(conn, req.Command, id, func() ([]byte, error) { return deployReply(e.rollback(id)) })
	case "restart":
		processID, idSet, err := req.OptionalString("processId")
		if err != nil {
			return nil, err
		}
		policy, policySet, err := req.OptionalString("policy")
		if err != nil {
			return nil, err
		}
		return e.locked(conn, req.Command, "", func() ([]byte, error) {
			restarted, err := e.restart(processID, idSet, policy, policySet)
			if err != nil {
				return nil, err
			}
			return jsconfig.Object{{Key: "restarted", Value: restarted}}.MarshalJSON()
		})
	case "follow":
		return e.follow(conn, req)
	case "check-reload":
		return e.checkReloadJSON()
	case "retire-owner":
		attestation, err := checkAttestation(req)
		if err != nil {
			return nil, err
		}
		return e.retire(conn, attestation, req.Bool("handoff"))
	case "shutdown":
		if err := e.Shutdown(conn); err != nil {
			return nil, err
		}
		return jsconfig.Object{{Key: "message", Value: "shutdown"}}.MarshalJSON()
	}
	return nil, fmt.Errorf("Unknown command: %s", req.Command)
}

// locked runs a mutating command under the operation lock; releaseID is
// the release the request names ("" when the daemon picks it).
func (e *Engine) locked(conn *control.Conn, command, releaseID string, run func() ([]byte, error)) ([]byte, error) {
	if err := e.acquireFor(conn, command, releaseID); err != nil {
		return nil, err
	}
	defer e.ops.release()
	return run()
}

// acquireFor takes the operation lock for a client's command. A client
// that hung up while the command waited its turn (a CI job killed on a
// timeout) does not get its operation run later behind its back.
func (e *Engine) acquireFor(conn *control.Conn, command, releaseID string) error {
	op := &operation{command: command, releaseID: releaseID}
	if conn != nil {
		op.clientPID = conn.PeerPID()
	}
	if err := e.ops.acquireAs(op); err != nil {
		return err
	}
	if conn != nil && conn.Gone() {
		e.ops.release()
		return fmt.Errorf("The %s was not run: its client disconnected while it waited for the previous operation to finish.", command)
	}
	return nil
}

// holdFields reads deploy's optional holdTraffic, beforeSwitch and
// maxPauseMs (docs/cli.md#control-protocol).
func holdFields(req *control.Request, d *DeployRequest) error {
	if raw, present := req.Raw("holdTraffic"); present {
		switch string(raw) {
		case "true":
			d.HoldTraffic = true
		case "false":
		default:
			return errors.New("holdTraffic must be true or false")
		}
	}
	cmd, set, err := req.OptionalString("beforeSwitch")
	if err != nil {
		return fmt.Errorf("beforeSwitch: %w", err)
	}
	if set {
		if !d.HoldTraffic {
			return errors.New("beforeSwitch requires holdTraffic: the command runs while traffic is held")
		}
		if err := CheckBeforeSwitch(cmd); err != nil {
			return err
		}
		d.BeforeSwitch = cmd
	}
	if _, present := req.Raw("maxPauseMs"); present && !d.HoldTraffic {
		return errors.New("maxPauseMs requires holdTraffic: it bounds the hold")
	}
	d.MaxPause, err = millisField(req, "maxPauseMs", DefaultMaxPause, time.Millisecond, MaxPauseLimit)
	return err
}

func deployReply(r DeployResult, err error) ([]byte, error) {
	if err != nil {
		return nil, err
	}
	var prev any
	if r.PreviousReleaseID != nil {
		prev = *r.PreviousReleaseID
	}
	return jsconfig.Object{{Key: "activeReleaseId", Value: r.ActiveReleaseID}, {Key: "previousReleaseId", Value: prev}}.MarshalJSON()
}

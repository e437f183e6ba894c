#!/usr/bin/env bash
# Train the shipped x2/x4 weights and their single-view (no biPAM) ablations with the recipe of
# recipes/README.md, from the pairs in ../shared/data (Motorcycle and MotorcycleE left out: they
# are the validation and demo scenes; Flickr1024 Test images are not there). Resumable: run it
# again and every run continues from its last checkpoint (--auto-resume), each within TIME_LIMIT.
#   usage: tools/train_shipped_weights.sh [WORK_DIR] [TIME_LIMIT_PER_RUN] [extra ipassr train options]
#   e.g.   tools/train_shipped_weights.sh /tmp/ipassr-train 2h
# Start weights: INIT_X4 (default: the x4 weights shipped before this recipe, 1006 steps; git show
# 21dbdc4:ipassr/weights/ipassr_x4.safetensors > x4-1006.safetensors).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
shared=${SHARED:-$repo/../shared}/data
work=${1:-/tmp/ipassr-train}; limit=${2:-2h}; shift $(( $# > 2 ? 2 : $# ))
init_x4=${INIT_X4:-$work/x4-1006.safetensors}
mkdir -p "$work/middlebury" "$work/val-src" "$work/runs"
[ -f "$init_x4" ] || git -C "$repo" show 21dbdc4:ipassr/weights/ipassr_x4.safetensors > "$init_x4"

for scene in "$shared"/middlebury/MiddEval3/trainingQ/*; do
  name=$(basename "$scene")
  case $name in
    Motorcycle|MotorcycleE) ln -sfn "$scene" "$work/val-src/$name" ;;
    *) ln -sfn "$scene" "$work/middlebury/$name" ;;
  esac
done
[ -d "$work/val/Middlebury" ] || ipassr prepare testset "$work/val-src" --name Middlebury --output-root "$work/val"
for s in 2 4; do
  # the colour pairs only (no grey, near-zero-disparity ETH3D); MiddEval3 trainingQ is already
  # quarter size (--no-shrink); pairs 1280 px and wider are shrunk by 2 so their disparities fit.
  # colour_x<s>h: the same patches with OpenCV SGBM's disparities, for the seventh stage
  # (--hints needs ipassr[stereo])
  for hints in "" --hints; do
    out="$work/colour_x$s${hints:+h}.safetensors"
    [ -f "$out" ] || ipassr prepare patches ${hints:+"$hints"} --no-shrink --shrink-wider-than 1250 \
        --scale "$s" --output "$out" "$shared/flickr1024/Train" "$work/middlebury" "$shared/stereo-extra"
  done
done
train() {  # name patches recipe init [options]
  local name=$1 patches=$2 recipe=$3 init=$4; shift 4
  ipassr train --config "$repo/recipes/$recipe" --out "$work/runs/$name" --auto-resume \
      --patches "$patches" --init-weights "$init" --validate "$work/val" --time-limit "$limit" "$@"
}
# every run ends at its recipe's lr_total_steps (550; 450, 420, 600, 800 and 600 for the second to
# sixth x4 stages and 300 for the seventh; 480 at x2, then 200 after each later x4 stage, then 300)
train x4 "$work/colour_x4.safetensors" shipped-x4.toml "$init_x4" --max-steps 550 "$@"
train x4-single "$work/colour_x4.safetensors" ablation-x4-single-view.toml "$init_x4" --max-steps 550 "$@"
# x4, second stage: 450 more steps from the end of the first, for the stereo network and its ablation
train x4-stage2 "$work/colour_x4.safetensors" shipped-x4-stage2.toml "$work/runs/x4/weights/last.safetensors" \
    --max-steps 450 "$@"
train x4-single-stage2 "$work/colour_x4.safetensors" ablation-x4-single-view-stage2.toml \
    "$work/runs/x4-single/weights/last.safetensors" --max-steps 450 "$@"
# x2: the x4 network's trunk and biPAM (end of its second stage) under the x2 upsampler shipped
# before (INIT_X2_UPSAMPLER, default: git show f97ef1f:ipassr/weights/ipassr_x2.safetensors), with
# the feature extraction and biPAM frozen; its ablation from the same start without biPAM
init_x2_up=${INIT_X2_UPSAMPLER:-$work/x2-before.safetensors}
[ -f "$init_x2_up" ] || git -C "$repo" show f97ef1f:ipassr/weights/ipassr_x2.safetensors > "$init_x2_up"
[ -f "$work/x4-under-x2-upsampler.safetensors" ] || python "$repo/tools/graft.py" \
    "$work/runs/x4-stage2/weights/last.safetensors" "$init_x2_up" "$work/x4-under-x2-upsampler.safetensors"
train x2-frozen "$work/colour_x2.safetensors" shipped-x2-frozen.toml "$work/x4-under-x2-upsampler.safetensors" \
    --max-steps 480 "$@"
train x2-single-frozen "$work/colour_x2.safetensors" ablation-x2-single-view-frozen.toml \
    "$work/x4-under-x2-upsampler.safetensors" --max-steps 480 "$@"
# x4, third stage: 420 more steps from the end of the second, for the stereo network and its
# ablation, which both start from the stereo network (the ablation without its biPAM)
train x4-stage3 "$work/colour_x4.safetensors" shipped-x4-stage3.toml "$work/runs/x4-stage2/weights/last.safetensors" \
    --max-steps 420 "$@"
train x4-single-stage3 "$work/colour_x4.safetensors" ablation-x4-single-view-stage3.toml \
    "$work/runs/x4-stage2/weights/last.safetensors" --max-steps 420 "$@"
# x2 after the third x4 stage: the new feature extraction (and biPAM) in the x2 networks above,
# frozen, the rest re-fit for 200 steps
refit_x2() {  # stage x2_run x2_single_run [options]: after x4 stage STAGE, graft and re-fit both arms
  local stage=$1 base=$2 single_base=$3; shift 3
  [ -f "$work/x2-stage$stage-graft.safetensors" ] || python "$repo/tools/graft.py" \
      "$work/runs/x4-stage$stage/weights/last.safetensors" "$work/runs/$base/weights/last.safetensors" \
      "$work/x2-stage$stage-graft.safetensors" --parts feature_conv,feature_group,attention
  [ -f "$work/x2-single-stage$stage-graft.safetensors" ] || python "$repo/tools/graft.py" \
      "$work/runs/x4-single-stage$stage/weights/last.safetensors" \
      "$work/runs/$single_base/weights/last.safetensors" \
      "$work/x2-single-stage$stage-graft.safetensors" --parts feature_conv,feature_group
  train "x2-frozen-stage$stage" "$work/colour_x2.safetensors" "shipped-x2-frozen-stage$stage.toml" \
      "$work/x2-stage$stage-graft.safetensors" --max-steps 200 "$@"
  train "x2-single-frozen-stage$stage" "$work/colour_x2.safetensors" \
      "ablation-x2-single-view-frozen-stage$stage.toml" "$work/x2-single-stage$stage-graft.safetensors" \
      --max-steps 200 "$@"
}
refit_x2 3 x2-frozen x2-single-frozen "$@"
# x4, fourth stage: 600 more steps from the end of the third, for the stereo network and its
# ablation (which continues its own third stage)
train x4-stage4 "$work/colour_x4.safetensors" shipped-x4-stage4.toml "$work/runs/x4-stage3/weights/last.safetensors" \
    --max-steps 600 "$@"
train x4-single-stage4 "$work/colour_x4.safetensors" ablation-x4-single-view-stage4.toml \
    "$work/runs/x4-single-stage3/weights/last.safetensors" --max-steps 600 "$@"
# x2 after the fourth x4 stage: its feature extraction (and biPAM) in the stage-3 x2 networks,
# frozen, the rest re-fit for 200 steps
refit_x2 4 x2-frozen-stage3 x2-single-frozen-stage3 "$@"
# x4, fifth stage: 800 more steps from the end of the fourth, for the stereo network and its
# ablation (which continues its own fourth stage); then the x2 re-fit on its parts
train x4-stage5 "$work/colour_x4.safetensors" shipped-x4-stage5.toml "$work/runs/x4-stage4/weights/last.safetensors" \
    --max-steps 800 "$@"
train x4-single-stage5 "$work/colour_x4.safetensors" ablation-x4-single-view-stage5.toml \
    "$work/runs/x4-single-stage4/weights/last.safetensors" --max-steps 800 "$@"
refit_x2 5 x2-frozen-stage4 x2-single-frozen-stage4 "$@"
# x4, sixth stage: 600 more steps from the end of the fifth, for the stereo network and its
# ablation, which both start from the stereo network (the ablation without its biPAM); then the x2
# re-fit, both arms from the stereo x2 network of the fifth stage (the single view without biPAM)
train x4-stage6 "$work/colour_x4.safetensors" shipped-x4-stage6.toml "$work/runs/x4-stage5/weights/last.safetensors" \
    --max-steps 600 "$@"
train x4-single-stage6 "$work/colour_x4.safetensors" ablation-x4-single-view-stage6.toml \
    "$work/runs/x4-stage5/weights/last.safetensors" --max-steps 600 "$@"
refit_x2 6 x2-frozen-stage5 x2-frozen-stage5 "$@"
# the seventh stage at both scales: 300 steps with the disparity-hint loss (x2: every weight
# trains, nothing frozen) from the end of the sixth; each ablation continues its own sixth stage
hints_stage() {  # scale stereo_run single_run [options]
  local s=$1 stereo=$2 single=$3; shift 3
  train "x$s-hints-stage7" "$work/colour_x${s}h.safetensors" "shipped-x$s-hints-stage7.toml" \
      "$work/runs/$stereo/weights/last.safetensors" --max-steps 300 "$@"
  train "x$s-single-stage7" "$work/colour_x$s.safetensors" "ablation-x$s-single-view-stage7.toml" \
      "$work/runs/$single/weights/last.safetensors" --max-steps 300 "$@"
}
hints_stage 2 x2-frozen-stage6 x2-single-frozen-stage6 "$@"
hints_stage 4 x4-stage6 x4-single-stage6 "$@"
echo "ship with: python tools/ship_weights.py $work/runs/x2-hints-stage7 --which last && python tools/ship_weights.py $work/runs/x4-hints-stage7 --which last"

// What three.js makes of the GLB named in ?glb=: skinned meshes, skeleton, per-vertex positions and COLOR_0, and
// the bones' world matrices at two times of the clip named in ?clip= played by an AnimationMixer. With
// ?times=t0,t1,... (seconds) the matrices are taken at those times instead, and with them the skinned world
// positions of the red (residual) vertices, as the renderer would draw them. Sets window.report.
import * as THREE from "three";
import { GLTFLoader } from "three/addons/loaders/GLTFLoader.js";

function values(attribute) {
  // getX..getW undo the accessor's normalisation (COLOR_0 may be stored as normalised unsigned shorts)
  const out = [];
  for (let i = 0; i < attribute.count; i++) {
    for (let c = 0; c < attribute.itemSize; c++) out.push(attribute.getComponent(i, c));
  }
  return out;
}

function boneMatrices(scene, bones, time, mixer) {
  mixer.setTime(time);
  scene.updateMatrixWorld(true);
  return bones.map((b) => Array.from(b.matrixWorld.elements));
}

function isRed(colors, i) {
  return colors.getComponent(i, 0) > 0.7 && colors.getComponent(i, 1) < 0.3 && colors.getComponent(i, 2) < 0.3;
}

function redSkinned(skinned) {
  // every red vertex of every primitive, skinned by the skeleton's current pose, in world space
  const out = [];
  const v = new THREE.Vector3();
  for (const mesh of skinned) {
    const colors = mesh.geometry.attributes.color;
    if (!colors) continue;
    for (let i = 0; i < colors.count; i++) {
      if (!isRed(colors, i)) continue;
      mesh.getVertexPosition(i, v).applyMatrix4(mesh.matrixWorld);
      out.push(v.x, v.y, v.z);
    }
  }
  return out;
}

async function main() {
  const query = new URLSearchParams(location.search);
  const url = query.get("glb");
  const gltf = await new GLTFLoader().loadAsync(url);
  const scene = gltf.scene;
  const skinned = [];
  scene.traverse((o) => { if (o.isSkinnedMesh) skinned.push(o); });
  const skeletons = [...new Set(skinned.map((m) => m.skeleton))];
  const sourceMeshes = new Set(skinned.map((m) => gltf.parser.associations.get(m)?.meshes));
  const bones = skeletons.length ? skeletons[0].bones : [];
  const report = {
    revision: THREE.REVISION,
    skinnedMeshes: skinned.length,
    sourceMeshes: [...sourceMeshes],
    skeletons: skeletons.length,
    bones: bones.map((b) => b.name),
    primitives: skinned.map((m) => ({
      positions: values(m.geometry.attributes.position),
      colors: m.geometry.attributes.color ? values(m.geometry.attributes.color) : null,
      colorSize: m.geometry.attributes.color ? m.geometry.attributes.color.itemSize : 0,
    })),
    clips: gltf.animations.map((c) => ({ name: c.name, duration: c.duration, tracks: c.tracks.length })),
  };
  const clip = gltf.animations.find((c) => c.name === query.get("clip"));
  if (clip) {
    const mixer = new THREE.AnimationMixer(scene);
    mixer.clipAction(clip).play();
    // two key times of the most densely keyed track: the first key and the middle one (key k is Blender's k-th frame)
    const times = clip.tracks.reduce((a, t) => (t.times.length > a.length ? t.times : a), []);
    if (query.get("times")) {
      report.times = query.get("times").split(",").map(Number);
      report.matrices = [];
      report.redSkinned = [];
      for (const t of report.times) {
        report.matrices.push(boneMatrices(scene, bones, t, mixer));
        report.redSkinned.push(redSkinned(skinned));
      }
    } else {
      report.keys = [0, Math.floor(times.length / 2)];
      report.times = report.keys.map((k) => times[k]);
      report.matrices = report.times.map((t) => boneMatrices(scene, bones, t, mixer));
    }
  }
  window.report = report;
}

main().catch((error) => { window.report = { error: String(error && error.stack || error) }; });

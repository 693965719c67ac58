// The CNI plugin and its installer: the public face.
export { asConflist, ConflistError, conflistName, hasPlugin, insertPlugin, PLUGIN_TYPE, primaryConfFile, removePlugin } from './conflist.ts';
export { type BundleManifest, type BundlePlan, computeManifest, launcherScript, loadManifest, MANIFEST_FILE, manifestForImage, planBundle } from './bundle.ts';
export { CNI_INSTALL_SETTINGS, type InstallConfig, Installer, loadInstallConfig, pluginEntry } from './install.ts';
export { CniError, CODES, errorJson, parseInvocation, passThrough, podAddresses, SUPPORTED_VERSIONS } from './protocol.ts';
export { cniAddRequest, podInMesh, requireServed } from './enrol.ts';
export { type Deps, pluginConfig, runPlugin } from './plugin.ts';

/**
 * A small stand-in for Jenkins that runs a declarative Jenkinsfile as plain Groovy, so its tests
 * need no Jenkins and nothing beyond Groovy and JUnit from Maven Central.
 *
 * It models only what this repository's Jenkinsfile uses: the sections (agent label, parameters,
 * options, environment, stages with when/steps/post, post), `when` conditions (expression,
 * environment, allOf, anyOf, not) and the steps (sh, echo, script, withCredentials,
 * sshUserPrivateKey, usernamePassword, archiveArtifacts, junit, publishHTML). Anything else fails the run with an
 * UnsupportedDslException naming it, so a Jenkinsfile change the harness would only pretend to
 * understand is noticed; model it here then.
 *
 * Steps do nothing but get recorded (name, arguments, the environment they saw, their stage).
 * As in Jenkins, a failing step fails its stage and the build, later stages are skipped, and
 * the stage's and the pipeline's `post` conditions still run.
 */
class DeclarativePipelineHarness {

    /** Raised for a DSL method or variable the harness does not model. */
    static class UnsupportedDslException extends RuntimeException {
        UnsupportedDslException(String message) { super(message) }
    }

    /** What a failing step throws; Jenkins' equivalent is hudson.AbortException. */
    static class StepFailure extends RuntimeException {
        StepFailure(String message) { super(message) }
    }

    /** One step call as the Jenkinsfile made it. */
    static class Call {
        String name
        List args
        Map<String, String> env   // the environment the step saw (withCredentials adds to it)
        String stage              // null outside any stage (the pipeline's post)
        String toString() { "${name}${args}" }
    }

    // Steps that only get recorded. sh, script, withCredentials and echo are special below.
    static final Set<String> PLAIN_STEPS = ['archiveArtifacts', 'junit', 'publishHTML'] as Set
    // Post conditions in the order Jenkins runs them, whatever order the Jenkinsfile lists them in.
    static final List<String> POST_CONDITIONS = ['always', 'failure', 'success', 'unsuccessful', 'cleanup']

    // ---- what a test sets before run() -----------------------------------------------------

    /** The agent's environment before the pipeline's `environment` section adds to it. */
    Map<String, String> env = [WORKSPACE: '/var/lib/jenkins/workspace/job', PATH: '/usr/bin:/bin']
    /** An `sh` step whose script this returns true for fails (as a non-zero exit would). */
    Closure<Boolean> shFails = { String script -> false }

    // ---- what run() records ----------------------------------------------------------------

    /** The build parameters: the Jenkinsfile's defaults overridden by run()'s arguments. */
    Map params = [:]
    List<Call> calls = []
    List<String> stagesRun = []
    /** Stage name -> why it was skipped ('when' or 'earlier failure'). */
    Map<String, String> stagesSkipped = [:]
    String agentLabel
    /** Option name -> its arguments (timeout, timestamps, ...). */
    Map<String, List> options = [:]
    /** Parameter name -> [type: 'string' or 'booleanParam', plus the step's own map]. */
    Map<String, Map> parameters = [:]
    String result = 'SUCCESS'

    // ---- the pipeline model, filled while the Jenkinsfile's `pipeline {}` is read ------------

    private Closure environmentBlock
    private List<Map> stages = []   // [name:, when:, steps:, post: [condition: closure]]
    private Map<String, Closure> post = [:]
    private Map currentStage         // the stage being declared, then the stage being run
    /** The sections being evaluated, innermost last. */
    private List<String> context = []
    /** A stack of the `when` condition results being collected (allOf etc. nest). */
    private List<List<Boolean>> conditions = []

    /** Evaluates the Jenkinsfile, runs it with the given build parameters and returns this. */
    DeclarativePipelineHarness run(File jenkinsfile, Map givenParams = [:]) {
        def config = new org.codehaus.groovy.control.CompilerConfiguration()
        config.scriptBaseClass = PipelineScript.name
        def shell = new GroovyShell(getClass().classLoader, new Binding(), config)
        PipelineScript script = (PipelineScript) shell.parse(jenkinsfile)
        script.setHarness(this)   // before anything in the script runs
        script.getBinding().setVariable('env', env)
        script.getBinding().setVariable('params', params)   // filled once `parameters` is read
        script.run()                                   // declares: calls pipeline()
        if (stages.isEmpty()) {
            throw new UnsupportedDslException("${jenkinsfile} declared no pipeline stages")
        }
        applyParams(givenParams)
        script.getBinding().setVariable('params', params)
        params.each { k, v -> env[k as String] = v as String }   // Jenkins exports parameters to the environment too
        execute()
        return this
    }

    List<Call> calls(String name) { calls.findAll { it.name == name } }

    /** The scripts of the sh steps run, in order. */
    List<String> shScripts() { calls('sh').collect { shScript(it.args) } }

    // ---- the DSL: every unresolved method of the Jenkinsfile arrives here ----------------------
    // The same name means different things in different sections (`environment` is a section in
    // pipeline {} and a condition in when {}), so what is allowed is decided by the innermost one.

    Object dsl(String name, List args) {
        String where = context ? context.last() : 'top'
        switch (where) {
            case 'top':   // outside pipeline {} a declarative Jenkinsfile only defines helpers
                if (name == 'pipeline') { return section('pipeline', closureArg(name, args)) }
                break
            case 'pipeline':
                switch (name) {
                    case 'agent': return section('agent', closureArg(name, args))
                    case 'parameters': return section('parameters', closureArg(name, args))
                    case 'options': return section('options', closureArg(name, args))
                    case 'environment': environmentBlock = closureArg(name, args); return null
                    case 'stages': return section('stages', closureArg(name, args))
                    case 'post': post = postBlock(closureArg(name, args)); return null
                }
                break
            case 'agent':
                if (name == 'label') { agentLabel = args[0] as String; return null }
                break
            case 'parameters':
                if (name in ['string', 'booleanParam']) {
                    Map p = args[0] as Map
                    parameters[p.name as String] = [type: name] + p
                    return null
                }
                break
            case 'options':
                if (name in ['timeout', 'timestamps', 'disableConcurrentBuilds']) { options[name] = args; return null }
                break
            case 'stages':
                if (name == 'stage' && args.size() == 2) {
                    currentStage = [name: args[0] as String, post: [:]]
                    stages << currentStage
                    return section('stage', args[1] as Closure)
                }
                break
            case 'stage':
                switch (name) {
                    case 'when': currentStage.when = closureArg(name, args); return null
                    case 'steps': currentStage.steps = closureArg(name, args); return null
                    case 'post': currentStage.post = postBlock(closureArg(name, args)); return null
                }
                break
            case 'post':
                if (name in POST_CONDITIONS) { currentPost[name] = closureArg(name, args); return null }
                break
            case 'when':
                return condition(name, args)
            case 'steps':
                return step(name, args)
        }
        throw new UnsupportedDslException("the harness does not model '${name}' in '${where}' " +
                                          "(arguments ${args}); teach DeclarativePipelineHarness it")
    }

    /** `PATH = "..."` inside `environment {}`; anywhere else a global assignment is refused. */
    void assign(String name, Object value) {
        if (context && context.last() == 'environment') {
            env[name] = value as String
            return
        }
        throw new UnsupportedDslException("the Jenkinsfile assigns '${name}' outside environment {}")
    }

    /** A bare name: a binding variable (env, params) or, as in Jenkins, an environment variable. */
    Object lookup(String name, Binding binding) {
        if (binding.hasVariable(name)) { return binding.getVariable(name) }
        if (env.containsKey(name)) { return env[name] }
        throw new UnsupportedDslException("the Jenkinsfile reads '${name}', which is neither a variable " +
                                          "the harness provides nor set in env")
    }

    // ---- declaring -------------------------------------------------------------------------

    private Map<String, Closure> currentPost

    private Object section(String name, Closure body) {
        context.push(name)
        try {
            return body.call()
        } finally {
            context.pop()
        }
    }

    private Map<String, Closure> postBlock(Closure body) {
        currentPost = [:]
        section('post', body)
        return currentPost
    }

    private static Closure closureArg(String name, List args) {
        if (args.size() != 1 || !(args[0] instanceof Closure)) {
            throw new UnsupportedDslException("'${name}' takes one block here, not ${args}")
        }
        return args[0] as Closure
    }

    /**
     * Parameters a run does not set take their declared defaults, as in Jenkins. Setting one the
     * Jenkinsfile does not declare is refused (Jenkins would ignore it) so that a renamed
     * parameter cannot leave a test passing without testing anything.
     */
    private void applyParams(Map given) {
        given.keySet().findAll { !parameters.containsKey(it) }.each {
            throw new UnsupportedDslException("the test sets parameter '${it}', which the Jenkinsfile does not declare")
        }
        Map values = [:]
        parameters.each { String name, Map p -> values[name] = given.containsKey(name) ? given[name] : p.defaultValue }
        params = values.asImmutable()
    }

    // ---- running ---------------------------------------------------------------------------

    private void execute() {
        if (environmentBlock) {
            section('environment', environmentBlock)
        }
        for (Map stage : stages) {
            currentStage = stage
            if (result != 'SUCCESS') {
                stagesSkipped[stage.name] = 'earlier failure'
                continue
            }
            if (stage.when && !whenHolds(stage.when as Closure)) {
                stagesSkipped[stage.name] = 'when'
                continue
            }
            stagesRun << stage.name
            String stageResult = 'SUCCESS'
            try {
                if (stage.steps) { section('steps', stage.steps as Closure) }
            } catch (StepFailure e) {
                stageResult = 'FAILURE'
                result = 'FAILURE'
            }
            runPost(stage.post as Map, stageResult)
        }
        currentStage = null
        runPost(post, result)
    }

    /** Runs the post conditions that apply; a failure in one fails the build, the rest still run. */
    private void runPost(Map<String, Closure> conditions, String outcome) {
        Map<String, Boolean> applies = [always: true, failure: outcome == 'FAILURE', success: outcome == 'SUCCESS',
                                        unsuccessful: outcome != 'SUCCESS', cleanup: true]
        POST_CONDITIONS.findAll { conditions?.containsKey(it) && applies[it] }.each {
            try {
                section('steps', conditions[it])
            } catch (StepFailure e) {
                result = 'FAILURE'
            }
        }
    }

    private boolean whenHolds(Closure body) {
        conditions.push([])
        section('when', body)
        List<Boolean> all = conditions.pop()
        return all.every()   // several conditions in one `when` must all hold, as in Jenkins
    }

    private Object condition(String name, List args) {
        switch (name) {
            case 'expression':
                conditions.last() << (closureArg(name, args).call() as boolean)
                return null
            case 'environment':
                Map m = args[0] as Map
                conditions.last() << (env[m.name as String] == m.value)
                return null
            case ['allOf', 'anyOf', 'not']:
                conditions.push([])
                closureArg(name, args).call()
                List<Boolean> inner = conditions.pop()
                boolean holds = name == 'allOf' ? inner.every() : name == 'anyOf' ? inner.any() : !inner.every()
                conditions.last() << holds
                return null
        }
        throw new UnsupportedDslException("the harness does not model the when condition '${name}'")
    }

    private Object step(String name, List args) {
        calls << new Call(name: name, args: args, env: new LinkedHashMap(env), stage: currentStage?.name)
        switch (name) {
            case 'sh':
                if (shFails(shScript(args))) {
                    throw new StepFailure("script returned exit code 1: ${shScript(args)}")
                }
                return 0
            case 'echo':
                return null
            case 'script':
                return closureArg(name, args).call()
            case ['sshUserPrivateKey', 'usernamePassword']:
                return args[0] as Map   // the binding withCredentials applies
            case 'withCredentials':
                return withCredentials(args[0] as List<Map>, args[1] as Closure)
        }
        if (name in PLAIN_STEPS) {
            return null
        }
        throw new UnsupportedDslException("the harness does not model the step '${name}' (arguments ${args})")
    }

    /**
     * Exposes each credential as Jenkins does, only inside the body: an SSH key as a key file path
     * and its user, a username/password pair as the two values.
     */
    private Object withCredentials(List<Map> bindings, Closure body) {
        Map<String, String> saved = new LinkedHashMap(env)
        bindings.each { Map b ->
            if (b.keyFileVariable) {
                env[b.keyFileVariable as String] = "/tmp/credentials/${b.credentialsId}.key".toString()
            }
            if (b.passwordVariable) {
                env[b.passwordVariable as String] = "password-of-${b.credentialsId}".toString()
            }
            env[b.usernameVariable as String] = "user-of-${b.credentialsId}".toString()
        }
        try {
            return body.call()
        } finally {
            env.clear()
            env.putAll(saved)
        }
    }

    private static String shScript(List args) {
        args[0] instanceof Map ? (args[0] as Map).script as String : args[0] as String
    }
}

/**
 * The Jenkinsfile's base class: routes what Groovy cannot resolve (the DSL's methods, bare
 * variable names, environment assignments) to the harness. Closures in the Jenkinsfile resolve
 * through their owner, this script, so nested blocks arrive here too.
 */
abstract class PipelineScript extends Script {
    DeclarativePipelineHarness harness

    def methodMissing(String name, Object args) {
        this.@harness.dsl(name, (args as Object[]).toList())
    }

    // this.@ and getBinding(): a plain property read in here would come back to getProperty.
    @Override
    Object getProperty(String name) {
        this.@harness.lookup(name, getBinding())
    }

    @Override
    void setProperty(String name, Object value) {
        this.@harness.assign(name, value)
    }
}
